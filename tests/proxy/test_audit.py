"""Audit events in kube-apiserver's format, the policy, request ids and log times. Pure."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from typing import Any

import jsonschema
import pytest
from audit_schema import validate_event
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import V1Status, V1UserInfo  # type: ignore[import-untyped]

from tenant_proxy import audit
from tenant_proxy.config import AuditRuleSettings, AuditSettings
from tenant_proxy.identity import Identity
from tenant_proxy.observability.audit_trail import Auditor
from tenant_proxy.observability.logs import iso_time
from tenant_proxy.observability.request_log import RequestLog, request_id

RECEIVED = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-:0123456789", min_size=1, max_size=20)
identities = st.builds(
    audit.user_info,
    words,
    st.lists(words, max_size=3),
    st.one_of(st.just(""), words),
    st.dictionaries(words, st.lists(words, max_size=2), max_size=2),
)
object_refs = st.one_of(
    st.none(),
    st.builds(
        audit.object_ref,
        words,
        st.one_of(st.just(""), words),
        st.one_of(st.just(""), words),
        st.one_of(st.just(""), st.just("storage.k8s.io")),
        st.sampled_from(["v1", "v1beta1"]),
        st.sampled_from(["", "status", "portforward"]),
    ),
)


@st.composite
def facts(draw: st.DrawFn) -> audit.Facts:
    return audit.Facts(
        audit_id=str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
        request_uri="/api/v1/" + draw(words),
        verb=draw(st.sampled_from(["get", "list", "watch", "create", "connect", "post"])),
        received=RECEIVED,
        source_ips=draw(st.lists(st.sampled_from(["127.0.0.1", "10.0.0.7", "::1"]), max_size=2)),
        user_agent=draw(st.sampled_from(["", "kubectl/v1.37.1 (linux/amd64)"])),
        user=draw(st.one_of(st.just({}), identities)),
        impersonated_user=draw(st.one_of(st.none(), identities)),
        object_ref=draw(object_refs),
        code=draw(st.sampled_from([200, 201, 101, 401, 403, 404, 410, 502])),
        reason=draw(st.sampled_from(["", "Forbidden", "NotFound"])),
        message=draw(st.sampled_from(["", 'namespaces "x" not found'])),
        annotations=draw(st.dictionaries(words, words, max_size=3)),
    )


stages = st.sampled_from(["RequestReceived", "ResponseStarted", "ResponseComplete"])


@given(facts(), stages)
def test_every_event_is_an_audit_k8s_io_v1_event(f: audit.Facts, stage: audit.Stage) -> None:
    event = audit.event(f, stage, RECEIVED + dt.timedelta(milliseconds=5))
    validate_event(event)
    # The nested objects also parse as the kubernetes client's own models.
    V1UserInfo.from_dict(event["user"])
    if "responseStatus" in event:
        status = V1Status.from_dict(event["responseStatus"])
        assert status.code == f.code
    assert ("responseStatus" in event) == (stage != "RequestReceived")


def test_the_schema_refuses_what_is_not_an_event() -> None:
    good = audit.event(
        audit.Facts("id", "/api", "get", RECEIVED, user={"username": "alice"}),
        "ResponseComplete",
        RECEIVED,
    )
    validate_event(good)
    for broken in (
        {k: v for k, v in good.items() if k != "auditID"},
        {**good, "stage": "Done"},
        {**good, "user": {"name": "alice"}},
        {**good, "stageTimestamp": "2026-01-02 03:04:05"},
        {**good, "responseStatus": {"code": "200"}},
        {**good, "body": "never"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate_event(broken)


def test_failure_status_carries_what_the_proxy_knows() -> None:
    assert audit.response_status(200, "", "") == {"metadata": {}, "code": 200}
    assert audit.response_status(404, "NotFound", 'nodes "x" not found') == {
        "metadata": {},
        "code": 404,
        "status": "Failure",
        "reason": "NotFound",
        "message": 'nodes "x" not found',
    }


def test_micro_times_are_written_as_the_api_server_writes_them() -> None:
    assert audit.micro_time(RECEIVED) == "2026-01-02T03:04:05.678901Z"


def test_policy_first_matching_rule_decides_else_the_default() -> None:
    policy = audit.Policy(
        (
            audit.Rule("None", verbs=frozenset({"watch"})),
            audit.Rule("Metadata", resources=frozenset({"nodes"})),
            audit.Rule("None", resources=frozenset({"nodes", "namespaces"})),
        ),
        default="Metadata",
    )
    assert policy.level("watch", "nodes") == "None"
    assert policy.level("list", "nodes") == "Metadata"
    assert policy.level("list", "namespaces") == "None"
    assert policy.level("get", "storageclasses.storage.k8s.io") == "Metadata"
    assert audit.Policy(default="None").level("get", "nodes") == "None"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("3f1c2a8e-1111-4222-8333-444455556666", True),
        ("my-trace.id:42", True),
        ("", False),
        (None, False),
        ("x" * 200, False),
        ("a b", False),
        ("line\r\nInjected: 1", False),
        ("é", False),
    ],
)
def test_request_id_keeps_a_sane_client_audit_id_else_makes_one(
    sent: str | None, kept: bool
) -> None:
    got = request_id(sent)
    if kept:
        assert got == sent
    else:
        assert str(uuid.UUID(got)) == got


@given(st.floats(min_value=0, max_value=4_000_000_000))
def test_log_times_are_iso_8601_utc_with_milliseconds(created: float) -> None:
    text = iso_time(created)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - created) < 0.001


def _entry(resource: str, verb: str = "list") -> RequestLog:
    entry = RequestLog(listener="tenant", method="GET", request_id="rid", path="/api/v1/x")
    entry.verb, entry.resource, entry.user, entry.tenants = verb, resource, "alice", "team-a"
    entry.authenticated = Identity("alice", ("tenant-a-devs",), method="x509")
    entry.code, entry.filtered, entry.dropped = 200, True, 2
    return entry


def _audited(caplog: pytest.LogCaptureFixture, auditor: Auditor, entry: RequestLog) -> list[Any]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tenant_proxy.audit"):
        auditor.received(entry)
        auditor.completed(entry)
    return [getattr(r, "audit_event", None) or r.fields for r in caplog.records]  # type: ignore[attr-defined]


def test_policy_none_writes_nothing_and_metadata_writes_both_stages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = AuditSettings(
        format="audit.k8s.io/v1",
        rules=[AuditRuleSettings(level="None", resources=["nodes"])],
    )
    auditor = Auditor(settings)
    assert _audited(caplog, auditor, _entry("nodes")) == []
    events = _audited(caplog, auditor, _entry("persistentvolumes"))
    assert [e["stage"] for e in events] == ["RequestReceived", "ResponseComplete"]


def test_the_default_format_is_one_line_per_filtered_read_with_its_tenants(
    caplog: pytest.LogCaptureFixture,
) -> None:
    (line,) = _audited(caplog, Auditor(), _entry("persistentvolumes"))
    assert (line["user"], line["tenants"], line["dropped"], line["request_id"]) == (
        "alice",
        "team-a",
        2,
        "rid",
    )


def test_watches_and_upgrades_have_a_response_started_stage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auditor = Auditor(AuditSettings(format="audit.k8s.io/v1"))
    upgrade, listed, watch = _entry("pods", "create"), _entry("pods"), _entry("pods", "watch")
    upgrade.code = 101
    with caplog.at_level(logging.INFO, logger="tenant_proxy.audit"):
        for entry in (upgrade, listed, watch):
            auditor.started(entry)
    started = [r.audit_event for r in caplog.records]  # type: ignore[attr-defined]
    assert [(e["verb"], e["responseStatus"]["code"]) for e in started] == [
        ("create", 101),
        ("watch", 200),
    ]


@pytest.mark.parametrize(
    ("forwarded", "real", "peer", "expected"),
    [
        (None, None, "127.0.0.1", ["127.0.0.1"]),
        ("203.0.113.7", None, "127.0.0.1", ["203.0.113.7", "127.0.0.1"]),
        (
            "203.0.113.7, junk ,10.0.0.1",
            None,
            "127.0.0.1",
            ["203.0.113.7", "10.0.0.1", "127.0.0.1"],
        ),
        ("203.0.113.7", "198.51.100.2", "127.0.0.1", ["203.0.113.7", "198.51.100.2", "127.0.0.1"]),
        ("203.0.113.7", "203.0.113.7", "127.0.0.1", ["203.0.113.7", "127.0.0.1"]),
        ("127.0.0.1", None, "127.0.0.1", ["127.0.0.1"]),  # the peer is the chain's last already
        ("127.0.0.1, 10.0.0.1", None, "127.0.0.1", ["127.0.0.1", "10.0.0.1", "127.0.0.1"]),
        ("::ffff:10.0.0.1", None, "::1", ["10.0.0.1", "::1"]),
        ("not an address", "nor this", "", []),
    ],
)
def test_source_ips_are_filled_as_kube_apiserver_fills_them(
    forwarded: str | None, real: str | None, peer: str, expected: list[str]
) -> None:
    assert audit.source_ips(forwarded, real, peer) == expected
