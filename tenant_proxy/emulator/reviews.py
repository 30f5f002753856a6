"""The review APIs: TokenReview, SubjectAccessReview and the self-reviews (TokenRequest apart).

Each handler takes the decoded request body and returns the object the server answers with
(201 Created), shaped as the reference transcripts show: the request echoed with
`creationTimestamp: null` and managedFields where the real server echoes, a fresh object
with only `status` where it builds a new one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy.emulator import errors, protobuf
from tenant_proxy.emulator.clock import rfc3339
from tenant_proxy.emulator.identity import Authenticator, TokenIssuer
from tenant_proxy.emulator.rbac import (
    Authorizer,
    non_resource_rules,
    resource_rules,
)
from tenant_proxy.emulator.store import StoreView
from tenant_proxy.emulator.types import Attributes, KubeObject, UserInfo

AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"


@dataclass(frozen=True)
class ReviewContext:
    """What a review needs: the caller and the emulator's identity parts.

    `namespace` is the request path's namespace (LocalSubjectAccessReview only);
    `user_agent` names the field manager as the real server does.
    """

    user: UserInfo
    authenticator: Authenticator
    authorizer: Authorizer
    issuer: TokenIssuer
    store_view: StoreView
    namespace: str = ""
    user_agent: str = ""
    now: dt.datetime | None = None

    def time(self) -> dt.datetime:
        return self.now or dt.datetime.now(dt.UTC)


ReviewHandler = Callable[[ReviewContext, KubeObject], KubeObject]


# --- shaping ------------------------------------------------------------------------------


def _compact(value: Any) -> Any:
    """Drop empty fields, as Go's omitempty does when the server re-encodes the echo."""
    if isinstance(value, dict):
        kept = {k: _compact(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", None, [], {})}
    return value


def _fields_v1(value: Any, top: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    owned: dict[str, Any] = {} if top else {".": {}}
    for key in sorted(value):
        owned[f"f:{key}"] = _fields_v1(value[key], False)
    return owned


def _managed_fields(ctx: ReviewContext, api_version: str, spec: KubeObject) -> list[KubeObject]:
    return [
        {
            "manager": ctx.user_agent.split("/")[0] or "unknown",
            "operation": "Update",
            "apiVersion": api_version,
            "time": rfc3339(ctx.time()),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": _fields_v1(spec, True)},
        }
    ]


def _echo(
    ctx: ReviewContext, body: KubeObject, kind: str, api_version: str, status: KubeObject
) -> KubeObject:
    """The request object returned with its status, as the real REST storage does."""
    spec = _compact(body.get("spec") or {})
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "creationTimestamp"}
    meta["creationTimestamp"] = None
    meta["managedFields"] = _managed_fields(ctx, api_version, spec)
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> errors.StatusError:
    """NewInvalid for (field, message) pairs, group and kind as the real Status carries."""
    details: dict[str, Any] = (
        {"name": name, "group": group, "kind": kind}
        if name
        else {
            "group": group,
            "kind": kind,
        }
    )
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes
    ]
    listed = [f"{f}: {m}" for f, m in causes]
    summary = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    return errors.StatusError(
        422, "Invalid", f'{kind}.{group} "{name}" is invalid: {summary}', details
    )


def user_info(user: UserInfo) -> KubeObject:
    """authentication/v1 UserInfo, empty fields omitted."""
    info: KubeObject = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = {k: list(v) for k, v in user.extra.items()}
    return info


# --- TokenReview --------------------------------------------------------------------------


def token_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    spec = body.get("spec") or {}
    token = str(spec.get("token") or "")
    if not token:
        raise errors.bad_request("token is required for TokenReview in authentication")
    audiences = list(spec.get("audiences") or ())
    # The real REST authenticates through the bearer-token reader: "Bearer " + token.
    parts = f"Bearer {token}".split(" ", 2)
    outcome = ctx.authenticator.authenticate_token(parts[1], audiences or None)
    status: KubeObject
    if outcome.user is None:
        status = {"user": {}, "error": outcome.error}
    else:
        status = {
            "authenticated": True,
            "user": user_info(outcome.user),
            "audiences": list(outcome.audiences),
        }
    return _echo(ctx, body, "TokenReview", f"{AUTHN}/v1", status)


# --- access reviews -----------------------------------------------------------------------


def _attributes(spec: Mapping[str, Any]) -> Attributes:
    res = spec.get("resourceAttributes")
    if res:
        return Attributes(
            verb=str(res.get("verb", "")),
            path="",
            resource_request=True,
            api_group=str(res.get("group", "")),
            api_version=str(res.get("version", "")),
            resource=str(res.get("resource", "")),
            subresource=str(res.get("subresource", "")),
            namespace=str(res.get("namespace", "")),
            name=str(res.get("name", "")),
        )
    non = spec.get("nonResourceAttributes") or {}
    return Attributes(
        verb=str(non.get("verb", "")), path=str(non.get("path", "")), resource_request=False
    )


def _attribute_errors(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    has_res, has_non = "resourceAttributes" in spec, "nonResourceAttributes" in spec
    if has_res and has_non:
        return [
            (
                "spec.nonResourceAttributes",
                'Invalid value: "": cannot be specified in combination with resourceAttributes',
            )
        ]
    if not has_res and not has_non:
        return [
            (
                "spec.resourceAttributes",
                'Invalid value: "null": exactly one of '
                "nonResourceAttributes or resourceAttributes must be specified",
            )
        ]
    return []


def _access_status(ctx: ReviewContext, user: UserInfo, attrs: Attributes) -> KubeObject:
    decision = ctx.authorizer.decide(user, attrs)
    status: KubeObject = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _spec_user(spec: Mapping[str, Any]) -> UserInfo:
    extra = {k: tuple(v) for k, v in (spec.get("extra") or {}).items()}
    groups = tuple(spec.get("groups") or ())
    return UserInfo(str(spec.get("user", "")), str(spec.get("uid", "")), groups, extra)


def subject_access_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    spec = body.get("spec") or {}
    problems = _attribute_errors(spec)
    if not spec.get("user") and not spec.get("groups"):
        problems.append(
            ("spec.user", 'Invalid value: "": at least one of user or group must be specified')
        )
    if problems:
        raise invalid("SubjectAccessReview", AUTHZ, "", problems)
    status = _access_status(ctx, _spec_user(spec), _attributes(spec))
    return _echo(ctx, body, "SubjectAccessReview", f"{AUTHZ}/v1", status)


def local_subject_access_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    spec = body.get("spec") or {}
    if not ctx.namespace:
        raise errors.bad_request("namespace is required on this type: ")
    res_ns = (spec.get("resourceAttributes") or {}).get("namespace", "")
    if spec.get("nonResourceAttributes") or res_ns != ctx.namespace:
        raise invalid(
            "LocalSubjectAccessReview",
            AUTHZ,
            "",
            [("spec.resourceAttributes.namespace", "must match metadata.namespace")],
        )
    status = _access_status(ctx, _spec_user(spec), _attributes(spec))
    return _echo(ctx, body, "LocalSubjectAccessReview", f"{AUTHZ}/v1", status)


def self_subject_access_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    spec = body.get("spec") or {}
    problems = _attribute_errors(spec)
    if problems:
        raise invalid("SelfSubjectAccessReview", AUTHZ, "", problems)
    status = _access_status(ctx, ctx.user, _attributes(spec))
    return _echo(ctx, body, "SelfSubjectAccessReview", f"{AUTHZ}/v1", status)


def self_subject_rules_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    namespace = str((body.get("spec") or {}).get("namespace") or "")
    if not namespace:
        raise errors.bad_request("no namespace on request")
    rules, problems = ctx.authorizer.resolve_rules(ctx.user, namespace)
    status: KubeObject = {
        "resourceRules": resource_rules(rules),
        "nonResourceRules": non_resource_rules(rules),
        "incomplete": False,
    }
    if problems:
        status["evaluationError"] = (
            problems[0] if len(problems) == 1 else (f"[{', '.join(problems)}]")
        )
    # The real server answers a new object: the spec is not echoed.
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": f"{AUTHZ}/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {},
        "status": status,
    }


def self_subject_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    """`kubectl auth whoami`: answered in the version asked (v1, v1beta1, v1alpha1)."""
    asked = str(body.get("apiVersion") or "")
    api_version = asked if asked.startswith(f"{AUTHN}/") else f"{AUTHN}/v1"
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user_info(ctx.user)},
    }


REVIEWS: dict[tuple[str, str], ReviewHandler] = {
    (AUTHN, "tokenreviews"): token_review,
    (AUTHN, "selfsubjectreviews"): self_subject_review,
    (AUTHZ, "subjectaccessreviews"): subject_access_review,
    (AUTHZ, "localsubjectaccessreviews"): local_subject_access_review,
    (AUTHZ, "selfsubjectaccessreviews"): self_subject_access_review,
    (AUTHZ, "selfsubjectrulesreviews"): self_subject_rules_review,
}


# --- protobuf request bodies --------------------------------------------------------------
# kubectl's typed clients send these kinds as `application/vnd.kubernetes.protobuf` (answers may
# be JSON: they accept both).

PROTOBUF = protobuf.MEDIA_TYPE
_PROTOBUF_KINDS = frozenset(
    (*(kind for kind in protobuf.SCHEMAS if kind.endswith("Review")), "TokenRequest")
)


def decode_protobuf(body: bytes) -> KubeObject:
    """A review or TokenRequest sent as Kubernetes protobuf, as its JSON object; raises 400
    for anything else or a malformed body."""
    try:
        doc = protobuf.decode(body)
    except protobuf.ProtobufError as exc:
        raise errors.bad_request(f"error decoding protobuf body: {exc}") from None
    if doc.get("kind") not in _PROTOBUF_KINDS:
        raise errors.bad_request(
            f"error decoding protobuf body: kind {doc.get('kind')!r} is not decoded here"
        )
    return doc
