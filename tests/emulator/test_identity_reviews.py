"""Review APIs and TokenRequest, compared with the reference transcripts where one exists."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from dict_store import DictStore
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator.bootstrap_policy import bootstrap_objects
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.identity import Authenticator, TokenIssuer
from tenant_proxy.emulator.rbac import RBAC_GROUP, Authorizer
from tenant_proxy.emulator.reviews import REVIEWS, ReviewContext, decode_protobuf
from tenant_proxy.emulator.token_requests import token_request
from tenant_proxy.emulator.types import KubeObject, UserInfo
from tenant_proxy.pki import new_ca

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
SA_UID = "af1bc8eb-9241-448d-9217-889fdcd3e89a"  # the uid in tokenreview-valid.txt
NOW = dt.datetime(2026, 11, 24, 13, 53, 55, tzinfo=dt.UTC)


def transcript(name: str) -> tuple[Any, Any]:
    """(request body, response body) of a reference transcript."""
    path = REFERENCE / name
    lines = path.read_text().splitlines()
    sent = [line[2:] for line in lines if line.startswith("> {")]
    start = max(i for i, line in enumerate(lines) if line == "<")
    body = json.loads("\n".join(lines[start + 1 :]))
    return (json.loads(sent[0]) if sent else None), body


def world() -> DictStore:
    return DictStore(
        [
            *bootstrap_objects(),
            {
                "kind": "RoleBinding",
                "metadata": {"name": "tenant-a-admin", "namespace": "team-a-dev"},
                "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": "tenant-a-devs"}],
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "admin"},
            },
            {
                "kind": "ServiceAccount",
                "metadata": {"name": "ci-bot", "namespace": "team-a-dev", "uid": SA_UID},
            },
            {
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "team-a-dev", "uid": "pod-uid"},
                "spec": {"serviceAccountName": "ci-bot"},
            },
        ]
    )


ISSUER = TokenIssuer()
ALICE = UserInfo("alice", groups=("tenant-a-devs", "system:authenticated"))
PROXY = UserInfo("tenant-proxy", groups=("system:authenticated",))


def context(
    user: UserInfo, store: DictStore | None = None, now: dt.datetime | None = NOW
) -> ReviewContext:
    store = store or world()
    authn = Authenticator(
        new_ca().cert_pem,
        {},
        ISSUER,
        lambda ns, name: store.get_object("", "serviceaccounts", ns, name) is not None,
    )
    return ReviewContext(user, authn, Authorizer(store), ISSUER, store, now=now)


def review(group: str, plural: str, ctx: ReviewContext, body: KubeObject) -> KubeObject:
    return REVIEWS[(group, plural)](ctx, body)


def without_time(obj: KubeObject) -> KubeObject:
    obj = copy.deepcopy(obj)
    for entry in obj["metadata"].get("managedFields", []):
        entry.pop("time")
    return obj


@pytest.mark.parametrize(
    ("name", "group", "plural", "user"),
    [
        ("sar-by-proxy.txt", "authorization.k8s.io", "subjectaccessreviews", PROXY),
        ("selfsar-alice-list-nodes.txt", "authorization.k8s.io", "selfsubjectaccessreviews", ALICE),
        ("tokenreview-invalid.txt", "authentication.k8s.io", "tokenreviews", PROXY),
    ],
)
def test_review_answers_match_the_transcript(
    name: str, group: str, plural: str, user: UserInfo
) -> None:
    sent, expected = transcript(name)
    answer = review(group, plural, context(user), sent)
    assert without_time(answer) == without_time(expected)


def test_token_review_of_a_service_account_token_matches_the_transcript() -> None:
    _, expected = transcript("tokenreview-valid.txt")
    token, _ = ISSUER.issue("team-a-dev", "ci-bot", SA_UID, [ISSUER.issuer_url], 3600)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
    answer = review(
        "authentication.k8s.io", "tokenreviews", context(PROXY), body | {"spec": {"token": token}}
    )
    assert answer["status"] == expected["status"]


def test_token_review_honours_requested_audiences() -> None:
    token, _ = ISSUER.issue("team-a-dev", "ci-bot", SA_UID, ["vault", "other"], 3600)
    ctx = context(PROXY)
    good = review(
        "authentication.k8s.io",
        "tokenreviews",
        ctx,
        {"spec": {"token": token, "audiences": ["vault"]}},
    )
    assert good["status"]["authenticated"] is True
    assert good["status"]["audiences"] == ["vault"]
    default = review("authentication.k8s.io", "tokenreviews", ctx, {"spec": {"token": token}})
    assert default["status"] == {"user": {}, "error": "invalid bearer token"}


def test_self_subject_rules_review_matches_the_transcript() -> None:
    sent, expected = transcript("selfsrr-alice.txt")
    answer = review("authorization.k8s.io", "selfsubjectrulesreviews", context(ALICE), sent)
    assert answer == expected


def test_self_subject_rules_review_needs_a_namespace_and_reports_evaluation_errors() -> None:
    with pytest.raises(StatusError) as caught:
        review("authorization.k8s.io", "selfsubjectrulesreviews", context(ALICE), {"spec": {}})
    assert (caught.value.code, caught.value.message) == (400, "no namespace on request")
    store = world()
    store.objects[(RBAC_GROUP, "rolebindings", "team-a-dev", "ghost")] = {
        "kind": "RoleBinding",
        "metadata": {"name": "ghost", "namespace": "team-a-dev"},
        "subjects": [{"kind": "User", "name": "alice"}],
        "roleRef": {"kind": "Role", "name": "gone"},
    }
    answer = review(
        "authorization.k8s.io",
        "selfsubjectrulesreviews",
        context(ALICE, store),
        {"spec": {"namespace": "team-a-dev"}},
    )
    assert answer["status"]["evaluationError"] == 'role.rbac.authorization.k8s.io "gone" not found'


def test_subject_access_review_without_user_or_attributes_is_invalid() -> None:
    with pytest.raises(StatusError) as caught:
        review(
            "authorization.k8s.io",
            "subjectaccessreviews",
            context(PROXY),
            {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
        )
    err = caught.value
    assert err.code == 422
    assert err.message == (
        'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": '
        "at least one of user or group must be specified"
    )
    assert err.details == {
        "group": "authorization.k8s.io",
        "kind": "SubjectAccessReview",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "": at least one of user or group must be specified',
                "field": "spec.user",
            }
        ],
    }


def test_non_resource_access_review_uses_path_rules() -> None:
    answer = review(
        "authorization.k8s.io",
        "subjectaccessreviews",
        context(PROXY),
        {
            "spec": {
                "user": "x",
                "groups": ["system:authenticated"],
                "nonResourceAttributes": {"verb": "get", "path": "/apis/apps"},
            }
        },
    )
    assert answer["status"] == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole '
        '"system:discovery" to Group "system:authenticated"',
    }


def test_self_subject_review_returns_the_callers_user_info() -> None:
    answer = review(
        "authentication.k8s.io",
        "selfsubjectreviews",
        context(ALICE),
        {"apiVersion": "authentication.k8s.io/v1beta1", "kind": "SelfSubjectReview"},
    )
    assert answer == {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1beta1",
        "metadata": {"creationTimestamp": None},
        "status": {
            "userInfo": {"username": "alice", "groups": ["tenant-a-devs", "system:authenticated"]}
        },
    }


def test_token_issued_at_a_past_time_has_expired_by_now() -> None:
    answer = token_request(context(PROXY), "team-a-dev", "ci-bot", {"spec": {}})
    assert answer["status"]["expirationTimestamp"] == "2026-11-24T14:53:55Z"
    assert ISSUER.verify(answer["status"]["token"], [ISSUER.issuer_url]) is None


def test_token_request_issues_a_token_the_authenticator_accepts() -> None:
    ctx = context(PROXY, now=None)
    answer = token_request(ctx, "team-a-dev", "ci-bot", {"spec": {}})
    assert answer["spec"] == {
        "audiences": ["https://kubernetes.default.svc"],
        "expirationSeconds": 3600,
        "boundObjectRef": None,
    }
    claims = ISSUER.verify(answer["status"]["token"], [ISSUER.issuer_url])
    assert claims is not None
    expiry = dt.datetime.fromtimestamp(claims["exp"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert answer["status"]["expirationTimestamp"] == expiry
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "ci-bot", "uid": SA_UID}


def test_token_request_bound_to_a_pod_carries_the_pod() -> None:
    ctx = context(PROXY, now=None)
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "web"}
    answer = token_request(ctx, "team-a-dev", "ci-bot", {"spec": {"boundObjectRef": ref}})
    outcome = ctx.authenticator.authenticate_token(answer["status"]["token"])
    assert outcome.user is not None
    assert outcome.user.extra["authentication.kubernetes.io/pod-uid"] == ("pod-uid",)


@pytest.mark.parametrize(
    ("namespace", "name", "spec", "code", "message"),
    [
        ("team-a-dev", "nobody", {}, 404, 'serviceaccounts "nobody" not found'),
        (
            "team-a-dev",
            "ci-bot",
            {"expirationSeconds": 10},
            422,
            'TokenRequest.authentication.k8s.io "ci-bot" is invalid: spec.expirationSeconds: '
            "Invalid value: 10: may not specify a duration less than 10 minutes",
        ),
        (
            "team-a-dev",
            "ci-bot",
            {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "missing"}},
            404,
            'pods "missing" not found',
        ),
    ],
)
def test_token_request_errors(
    namespace: str, name: str, spec: KubeObject, code: int, message: str
) -> None:
    with pytest.raises(StatusError) as caught:
        token_request(context(PROXY), namespace, name, {"spec": spec})
    assert (caught.value.code, caught.value.message) == (code, message)


@given(st.binary(max_size=64))
def test_malformed_protobuf_bodies_are_400_never_a_crash(tail: bytes) -> None:
    assert decode_outcome(b"k8s\x00" + tail) in {400, *(k for _, k in KINDS)}


def decode_outcome(body: bytes) -> int | str:
    """The decoded kind, or the Status code decoding was refused with."""
    try:
        return str(decode_protobuf(body)["kind"])
    except StatusError as err:
        return err.code


KINDS = [
    ("authorization.k8s.io/v1", "SubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
    ("authentication.k8s.io/v1", "TokenReview"),
    ("authentication.k8s.io/v1", "TokenRequest"),
    ("authentication.k8s.io/v1", "SelfSubjectReview"),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"),
]


def test_non_review_protobuf_kinds_are_refused() -> None:
    type_meta = b"\n\x02v1\x12\x09ConfigMap"
    body = b"k8s\x00\n" + bytes([len(type_meta)]) + type_meta
    with pytest.raises(StatusError) as caught:
        decode_protobuf(body)
    assert caught.value.code == 400
