"""Accept negotiation and ages, as kube-apiserver and kubectl do them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import clock
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.negotiation import (
    JSON,
    Format,
    negotiate,
    negotiate_plain,
    parse_accept,
)
from tenant_proxy.emulator.types import ResourceType

KUBECTL_TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
KUBECTL_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
NAMESPACES = ResourceType("", "v1", "namespaces", "namespace", "Namespace", namespaced=False)


def test_no_accept_header_means_json() -> None:
    assert negotiate(None, is_list=True, is_watch=False) == JSON
    assert negotiate("", is_list=False, is_watch=False) == JSON


def test_kubectl_table_accept_gets_a_v1_table_for_get_list_and_watch() -> None:
    for is_list, is_watch in ((False, False), (True, False), (True, True)):
        assert negotiate(KUBECTL_TABLE, is_list=is_list, is_watch=is_watch) == Format("table", "v1")


def test_first_acceptable_clause_wins_in_accept_order() -> None:
    accept = "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    assert negotiate(accept, is_list=True, is_watch=False) == Format("table", "v1beta1")


def test_higher_quality_clause_is_tried_first() -> None:
    accept = "application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io"
    assert negotiate(accept, is_list=True, is_watch=False) == Format("table", "v1")


def test_concrete_type_is_tried_before_a_wildcard() -> None:
    accept = "*/*,application/json;as=Table;v=v1;g=meta.k8s.io"
    assert negotiate(accept, is_list=True, is_watch=False) == Format("table", "v1")


def test_protobuf_with_a_wildcard_alternative_gets_json() -> None:
    accept = "application/vnd.kubernetes.protobuf, */*"
    assert negotiate(accept, is_list=False, is_watch=False) == JSON


def test_protobuf_table_falls_through_to_json() -> None:
    accept = "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
    assert negotiate(accept, is_list=True, is_watch=False) == JSON


@pytest.mark.parametrize(
    "accept",
    [
        "application/vnd.kubernetes.protobuf",
        "text/plain",
        "application/json;as=Table;v=v1alpha1;g=meta.k8s.io",
        "application/json;as=Table;v=v1",
        "application/json;as=Widget;v=v1;g=meta.k8s.io",
        "application/json;q=0",
        "application/json;stream=chunks",
        "nonsense",
    ],
)
def test_nothing_json_can_serve_is_not_acceptable(accept: str) -> None:
    with pytest.raises(StatusError) as raised:
        negotiate(accept, is_list=True, is_watch=False)
    assert (raised.value.code, raised.value.reason) == (406, "NotAcceptable")


def test_watch_stream_parameter_is_accepted() -> None:
    assert negotiate("application/json;stream=watch", is_list=True, is_watch=True) == JSON


def test_partial_object_metadata_list_for_a_list() -> None:
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
    assert negotiate(accept, is_list=True, is_watch=False) == Format("partial", "v1")


def test_partial_object_metadata_for_a_get_and_a_watch() -> None:
    accept = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
    assert negotiate(accept, is_list=False, is_watch=False) == Format("partial", "v1")
    assert negotiate(accept, is_list=True, is_watch=True) == Format("partial", "v1")


def test_partial_object_metadata_for_a_list_is_not_acceptable() -> None:
    accept = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
    with pytest.raises(StatusError) as raised:
        negotiate(accept, is_list=True, is_watch=False, rt=NAMESPACES)
    assert raised.value.code == 406
    assert raised.value.message == (
        "you requested PartialObjectMetadata, but the requested object is a list "
        "(*core.NamespaceList)"
    )
    assert raised.value.details is None


def test_partial_object_metadata_list_for_a_get_is_not_acceptable() -> None:
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    with pytest.raises(StatusError) as raised:
        negotiate(accept, is_list=False, is_watch=False)
    assert raised.value.message.endswith("is not a list (*unstructured.Unstructured)")


def test_partial_object_metadata_list_watch_sends_full_objects() -> None:
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    assert negotiate(accept, is_list=True, is_watch=True) == JSON


def test_discovery_skips_kubectls_aggregated_discovery_clauses() -> None:
    assert negotiate_plain(KUBECTL_DISCOVERY) == JSON
    assert negotiate_plain(None) == JSON


def test_discovery_with_only_aggregated_discovery_is_not_acceptable() -> None:
    with pytest.raises(StatusError):
        negotiate_plain("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")


def test_accept_parsing_keeps_parameters_and_order() -> None:
    ranges = parse_accept("application/json;as=Table;v=v1;g=meta.k8s.io, */*;q=0.8, text/*")
    assert [(r.type, r.subtype, r.q) for r in ranges] == [
        ("application", "json", 1.0),
        ("text", "*", 1.0),
        ("*", "*", 0.8),
    ]
    assert ranges[0].params == {"as": "Table", "v": "v1", "g": "meta.k8s.io"}


@given(st.text(max_size=200), st.booleans(), st.booleans())
def test_negotiation_answers_a_format_or_a_406_for_any_header(
    accept: str, is_list: bool, is_watch: bool
) -> None:
    outcome: str | int
    try:
        outcome = negotiate(accept, is_list=is_list, is_watch=is_watch).kind
    except StatusError as error:
        outcome = error.code
    assert outcome in ("json", "table", "partial", 406)


NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "text"),
    [
        (timedelta(seconds=-3), "<invalid>"),
        (timedelta(seconds=-1.5), "0s"),
        (timedelta(seconds=0), "0s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(seconds=120), "2m"),
        (timedelta(seconds=150), "2m30s"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=8, minutes=5), "8h"),
        (timedelta(hours=47), "47h"),
        (timedelta(days=2), "2d"),
        (timedelta(days=3, hours=4), "3d4h"),
        (timedelta(days=8, hours=4), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=800), "2y70d"),
        (timedelta(days=365 * 9), "9y"),
    ],
)
def test_age_reads_like_kubectl(elapsed: timedelta, text: str) -> None:
    assert clock.human_duration(elapsed.total_seconds()) == text


def test_age_is_measured_from_the_creation_timestamp() -> None:
    assert clock.age("2026-11-24T11:57:30Z", NOW) == "2m30s"


def test_age_without_a_timestamp_is_unknown() -> None:
    assert clock.age("", NOW) == "<unknown>"
    assert clock.age("yesterday", NOW) == "<unknown>"


@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_age_never_grows_shorter_with_time(seconds: int) -> None:
    assert _as_seconds(clock.human_duration(seconds)) <= _as_seconds(
        clock.human_duration(seconds + 3600)
    )


def _as_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}
    total, number = 0, ""
    for char in text:
        if char.isdigit():
            number += char
        else:
            total, number = total + int(number) * units[char], ""
    return total
