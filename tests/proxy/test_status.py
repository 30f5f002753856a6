"""Status errors decode to exactly what kube-apiserver answered in the transcripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy import status

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def transcript_answer(name: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status code and decoded JSON body of one recorded exchange."""
    lines = (REFERENCE / f"{name}.txt").read_text().splitlines()
    response = [line for line in lines if line.startswith("< ")]
    code = int(response[0].split()[1])
    body_start = max(i for i, line in enumerate(lines) if line.startswith("<")) + 1
    body = "\n".join(line for line in lines[body_start:] if not line.startswith("#"))
    return code, json.loads(body)


def as_sent(err: status.ApiError) -> tuple[int, dict[str, Any]]:
    return err.code, orjson.loads(status.encode(err))


def test_missing_namespace_is_the_servers_not_found() -> None:
    assert as_sent(status.not_found("namespaces", "nope")) == transcript_answer("get-namespace-404")


def test_missing_node_is_the_servers_not_found() -> None:
    assert as_sent(status.not_found("nodes", "nope")) == transcript_answer("get-node-404-table")


def test_body_keys_come_in_the_servers_order() -> None:
    _, expected = transcript_answer("get-namespace-404")
    assert list(status.not_found("namespaces", "nope").body()) == list(expected)
    assert list(status.not_found("namespaces", "nope").body()["details"]) == list(
        expected["details"]
    )


def test_not_found_in_a_named_group_qualifies_the_resource() -> None:
    body = status.not_found("storageclasses", "gold", "storage.k8s.io").body()
    assert body["message"] == 'storageclasses.storage.k8s.io "gold" not found'
    assert body["details"] == {"name": "gold", "group": "storage.k8s.io", "kind": "storageclasses"}
    assert list(body["details"]) == ["name", "group", "kind"]


def test_missing_node_metrics_is_metrics_servers_not_found() -> None:
    # metrics-server looks the node up in its node lister first: its 404 names a node.
    body = status.not_found("nodes", "nope", "metrics.k8s.io").body()
    assert body["message"] == 'node "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "node"}


def test_unauthorized_is_the_servers_bad_token_answer() -> None:
    assert as_sent(status.unauthorized()) == transcript_answer("authn-401-bad-token")


def test_rbac_denial_of_a_cluster_list_matches_the_server() -> None:
    message = status.forbidden_message("alice", "list", "namespaces")
    err = status.forbidden(message, kind="namespaces")
    assert as_sent(err) == transcript_answer("authz-403-alice-namespaces")


def test_impersonation_denial_matches_the_server() -> None:
    message = status.forbidden_message("alice", "impersonate", "users", name="bob")
    err = status.forbidden(message, kind="users", name="bob")
    assert as_sent(err) == transcript_answer("impersonate-403-not-allowed")


def test_rbac_denial_names_namespace_subresource_and_group() -> None:
    message = status.forbidden_message(
        "alice", "create", "pods", name="web", namespace="team-b-dev", subresource="exec"
    )
    assert message == (
        'pods "web" is forbidden: User "alice" cannot create resource "pods/exec" '
        'in API group "" in the namespace "team-b-dev"'
    )
    message = status.forbidden_message("alice", "list", "storageclasses", group="storage.k8s.io")
    assert message == (
        'storageclasses.storage.k8s.io is forbidden: User "alice" cannot list resource '
        '"storageclasses" in API group "storage.k8s.io" at the cluster scope'
    )


def test_non_resource_denial_names_the_path() -> None:
    message = status.forbidden_message("alice", "get", "", name="/metrics")
    assert message == 'forbidden: User "alice" cannot get path "/metrics"'


def test_forbidden_without_subject_still_sends_empty_details() -> None:
    assert status.forbidden("no").body()["details"] == {}


def test_method_not_allowed_matches_the_server() -> None:
    assert as_sent(status.method_not_allowed()) == transcript_answer("method-not-allowed")


def test_bad_request_has_no_details() -> None:
    body = status.bad_request("bad path").body()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "bad path",
        "reason": "BadRequest",
        "code": 400,
    }


def test_too_large_names_the_limit() -> None:
    err = status.too_large(3145728)
    assert (err.code, err.reason) == (413, "RequestEntityTooLarge")
    assert err.message == "Request entity too large: limit is 3145728"


def test_too_many_requests_carries_retry_after_in_header_and_details() -> None:
    err = status.too_many_requests(7)
    assert (err.code, err.reason) == (429, "TooManyRequests")
    assert err.headers == {"Retry-After": "7"}
    assert err.body()["details"] == {"retryAfterSeconds": 7}


def test_service_unavailable_sends_retry_after_only_when_given() -> None:
    assert status.service_unavailable("not synced").headers == {}
    err = status.service_unavailable("not synced", retry_after=3)
    assert (err.code, err.reason, err.message) == (503, "ServiceUnavailable", "not synced")
    assert err.headers == {"Retry-After": "3"}
    assert err.body()["details"] == {"retryAfterSeconds": 3}


@pytest.mark.parametrize(
    ("build", "code", "reason"),
    [
        (status.bad_gateway, 502, "InternalError"),
        (status.gateway_timeout, 504, "Timeout"),
        (status.not_acceptable, 406, "NotAcceptable"),
        (status.internal_error, 500, "InternalError"),
    ],
)
def test_upstream_and_negotiation_errors_have_kubernetes_reasons(
    build: Any, code: int, reason: str
) -> None:
    err = build("upstream said no")
    assert (err.code, err.reason) == (code, reason)
    assert "upstream said no" in err.message
    assert err.body()["code"] == code


def test_api_error_is_an_exception_carrying_its_message() -> None:
    with pytest.raises(status.ApiError, match="nope"):
        raise status.not_found("namespaces", "nope")


@given(
    resource=st.text(min_size=1),
    name=st.text(min_size=1),
    group=st.text(),
)
def test_not_found_always_encodes_to_a_decodable_status(
    resource: str, name: str, group: str
) -> None:
    body = orjson.loads(status.encode(status.not_found(resource, name, group)))
    assert body["kind"] == "Status"
    assert body["code"] == 404
    assert body["details"]["name"] == name
    assert body["details"]["kind"] == resource
    assert body["details"].get("group", "") == group
