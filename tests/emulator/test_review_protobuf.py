"""Protobuf answers to access reviews: the recorded bytes, and any review, both ways."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import protobuf, review_protobuf
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.negotiation import negotiate_review

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
KUBECTL = "application/vnd.kubernetes.protobuf,application/json"


def recorded_answer(name: str) -> bytes:
    lines = (REFERENCE / f"{name}.txt").read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line == "<")
    return base64.b64decode("".join(lines[start + 2 :]))


@pytest.mark.parametrize(
    "name", ["selfsar-protobuf-alice-list-namespaces", "selfsrr-protobuf-alice"]
)
def test_recorded_answers_decode_and_encode_back_to_the_same_bytes(name: str) -> None:
    answer = recorded_answer(name)
    assert review_protobuf.encode(review_protobuf.decode(answer)) == answer


def test_the_recorded_access_review_reads_as_its_json_twin() -> None:
    doc = review_protobuf.decode(recorded_answer("selfsar-protobuf-alice-list-namespaces"))
    assert doc["spec"] == {
        "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "namespaces"}
    }
    assert doc["status"] == {"allowed": False}
    assert doc["metadata"]["creationTimestamp"] is None
    assert doc["metadata"]["managedFields"][0]["time"] == "2026-12-06T20:34:22Z"


def test_an_empty_rules_review_answer_is_the_go_zero_values() -> None:
    doc = {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": {"resourceRules": [], "nonResourceRules": [], "incomplete": False},
    }
    raw = review_protobuf.encode(doc)
    # magic, TypeMeta, then metadata (8 empty strings/ints + clusterName), spec, status.
    assert raw.startswith(b"k8s\x00\x0a\x31\x0a\x17authorization.k8s.io/v1")
    assert review_protobuf.decode(raw) == doc


def test_kinds_without_an_encoding_are_refused() -> None:
    with pytest.raises(protobuf.ProtobufError):
        review_protobuf.encode({"kind": "TokenReview"})


text = st.text(max_size=12)
attributes = st.fixed_dictionaries(
    {},
    optional={
        k: text.filter(bool)
        for k in ("namespace", "verb", "group", "version", "resource", "subresource", "name")
    },
)
timestamps = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)
managed = st.fixed_dictionaries(
    {
        "manager": text.filter(bool),
        "operation": st.just("Update"),
        "apiVersion": st.just("authorization.k8s.io/v1"),
        "time": timestamps,
        "fieldsType": st.just("FieldsV1"),
        "fieldsV1": st.just({"f:spec": {"f:resourceAttributes": {".": {}}}}),
    }
)
access_reviews = st.builds(
    lambda attrs, non, allowed, reason, fields: {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {"creationTimestamp": None, **({"managedFields": fields} if fields else {})},
        "spec": {"nonResourceAttributes": non}
        if non is not None
        else {"resourceAttributes": attrs},
        "status": {"allowed": allowed, **({"reason": reason} if reason else {})},
    },
    attributes,
    st.none()
    | st.fixed_dictionaries({}, optional={"path": text.filter(bool), "verb": text.filter(bool)}),
    st.booleans(),
    text,
    st.lists(managed, max_size=2),
)
words = st.lists(text.filter(bool), min_size=1, max_size=3)
rules_reviews = st.builds(
    lambda res, non, incomplete: {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": {"resourceRules": res, "nonResourceRules": non, "incomplete": incomplete},
    },
    st.lists(
        st.fixed_dictionaries(
            {"verbs": words},
            optional={"apiGroups": words, "resources": words, "resourceNames": words},
        ),
        max_size=3,
    ),
    st.lists(
        st.fixed_dictionaries({"verbs": words}, optional={"nonResourceURLs": words}), max_size=3
    ),
    st.booleans(),
)


@given(access_reviews | rules_reviews)
def test_any_review_answer_decodes_to_itself(doc: dict[str, Any]) -> None:
    raw = review_protobuf.encode(doc)
    assert review_protobuf.decode(raw) == doc
    assert review_protobuf.encode(review_protobuf.decode(raw)) == raw


@given(access_reviews)
def test_the_request_decoder_reads_the_same_spec(doc: dict[str, Any]) -> None:
    # protobuf.decode was written apart, for kubectl's request bodies: an independent reader.
    assert protobuf.decode(review_protobuf.encode(doc))["spec"] == doc["spec"]


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        (KUBECTL, "protobuf"),
        ("application/vnd.kubernetes.protobuf", "protobuf"),
        ("application/json", "json"),
        ("application/json, application/vnd.kubernetes.protobuf", "json"),
        ("application/vnd.kubernetes.protobuf;q=0.5, application/json", "json"),
        ("*/*", "json"),
        ("application/vnd.kubernetes.protobuf, */*", "protobuf"),
        (None, "json"),
    ],
)
def test_a_review_is_answered_in_the_first_encoding_the_client_accepts(
    accept: str | None, answer: str
) -> None:
    assert negotiate_review(accept, protobuf=True) == answer


def test_kinds_without_protobuf_fall_back_to_json_or_406() -> None:
    assert negotiate_review(KUBECTL, protobuf=False) == "json"
    with pytest.raises(StatusError) as caught:
        negotiate_review("application/vnd.kubernetes.protobuf", protobuf=False)
    assert caught.value.code == 406
    with pytest.raises(StatusError):
        negotiate_review("application/yaml", protobuf=True)
