"""The review APIs (TokenReview, SubjectAccessReview and the self-reviews) and TokenRequest.

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

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.identity import Authenticator, BoundObject, TokenIssuer
from tenant_proxy.emulator.rbac import (
    Authorizer,
    ObjectSource,
    non_resource_rules,
    resource_rules,
)
from tenant_proxy.emulator.types import Attributes, KubeObject, UserInfo

AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"
DEFAULT_TOKEN_SECONDS = 3600
MIN_TOKEN_SECONDS = 600
MAX_TOKEN_SECONDS = 1 << 32


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
    store_view: ObjectSource
    namespace: str = ""
    user_agent: str = ""
    now: dt.datetime | None = None

    def time(self) -> dt.datetime:
        return self.now or dt.datetime.now(dt.UTC)


ReviewHandler = Callable[[ReviewContext, KubeObject], KubeObject]


# --- shaping ------------------------------------------------------------------------------


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
            "time": _rfc3339(ctx.time()),
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


def _invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> errors.StatusError:
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
        raise _invalid("SubjectAccessReview", AUTHZ, "", problems)
    status = _access_status(ctx, _spec_user(spec), _attributes(spec))
    return _echo(ctx, body, "SubjectAccessReview", f"{AUTHZ}/v1", status)


def local_subject_access_review(ctx: ReviewContext, body: KubeObject) -> KubeObject:
    spec = body.get("spec") or {}
    if not ctx.namespace:
        raise errors.bad_request("namespace is required on this type: ")
    res_ns = (spec.get("resourceAttributes") or {}).get("namespace", "")
    if spec.get("nonResourceAttributes") or res_ns != ctx.namespace:
        raise _invalid(
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
        raise _invalid("SelfSubjectAccessReview", AUTHZ, "", problems)
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
# be JSON: they accept both). Only the fields the reviews read are decoded.

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
Schema = dict[int, tuple[str, Any]]
_META: Schema = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str")}
_RESOURCE: Schema = {
    1: ("namespace", "str"),
    2: ("verb", "str"),
    3: ("group", "str"),
    4: ("version", "str"),
    5: ("resource", "str"),
    6: ("subresource", "str"),
    7: ("name", "str"),
}
_NON_RESOURCE: Schema = {1: ("path", "str"), 2: ("verb", "str")}
_SAR_SPEC: Schema = {
    1: ("resourceAttributes", _RESOURCE),
    2: ("nonResourceAttributes", _NON_RESOURCE),
    3: ("user", "str"),
    4: ("groups", "strs"),
    5: ("extra", "extra"),
    6: ("uid", "str"),
}
_BOUND: Schema = {
    1: ("kind", "str"),
    2: ("apiVersion", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
}
_SPECS: dict[str, Schema] = {
    "TokenReview": {1: ("token", "str"), 2: ("audiences", "strs")},
    "TokenRequest": {
        1: ("audiences", "strs"),
        4: ("expirationSeconds", "int"),
        3: ("boundObjectRef", _BOUND),
    },
    "SubjectAccessReview": _SAR_SPEC,
    "LocalSubjectAccessReview": _SAR_SPEC,
    "SelfSubjectAccessReview": {k: v for k, v in _SAR_SPEC.items() if k in (1, 2)},
    "SelfSubjectRulesReview": {1: ("namespace", "str")},
    "SelfSubjectReview": {},
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            out.append((number, buf[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _message(buf: bytes, schema: Schema) -> KubeObject:
    obj: KubeObject = {}
    for number, value in _fields(buf):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "int" and isinstance(value, int):
            obj[name] = value
        elif isinstance(value, int):
            raise ValueError(f"field {name}: unexpected varint")
        elif kind == "str":
            obj[name] = value.decode()
        elif kind == "strs":
            obj.setdefault(name, []).append(value.decode())
        elif kind == "extra":
            entry = dict(_fields(value))
            key = entry.get(1, b"")
            items = [
                v.decode()
                for n, v in _fields(_as_bytes(entry.get(2, b"")))
                if n == 1 and isinstance(v, bytes)
            ]
            obj.setdefault(name, {})[_as_bytes(key).decode()] = items
        elif isinstance(kind, dict):
            obj[name] = _message(value, kind)
    return obj


def _as_bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def decode_protobuf(body: bytes) -> KubeObject:
    """A review or TokenRequest sent as Kubernetes protobuf, as its JSON object; raises 400
    for anything else or a malformed body."""
    try:
        if not body.startswith(_MAGIC):
            raise ValueError("missing the k8s protobuf magic")
        envelope = dict(_fields(body[len(_MAGIC) :]))
        type_meta = {n: _as_bytes(v).decode() for n, v in _fields(_as_bytes(envelope[1]))}
        kind = type_meta.get(2, "")
        if kind not in _SPECS:
            raise ValueError(f"kind {kind!r} is not decoded here")
        raw = _message(
            _as_bytes(envelope.get(2, b"")), {1: ("metadata", _META), 2: ("spec", _SPECS[kind])}
        )
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding protobuf body: {exc}") from None
    return {"kind": kind, "apiVersion": type_meta.get(1, ""), **raw}


# --- TokenRequest -------------------------------------------------------------------------


def _expiration(spec: Mapping[str, Any], name: str) -> int:
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        return DEFAULT_TOKEN_SECONDS
    if not isinstance(seconds, int) or seconds < MIN_TOKEN_SECONDS:
        message = f"Invalid value: {seconds}: may not specify a duration less than 10 minutes"
    elif seconds > MAX_TOKEN_SECONDS:
        message = f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"
    else:
        return seconds
    raise _invalid("TokenRequest", AUTHN, name, [("spec.expirationSeconds", message)])


def _bound_object(
    ctx: ReviewContext, namespace: str, sa_name: str, ref: Mapping[str, Any]
) -> BoundObject:
    kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
    plural = {"Pod": "pods", "Secret": "secrets"}.get(kind)
    if plural is None or ref.get("apiVersion", "v1") != "v1":
        gvk = f"{ref.get('apiVersion', '')}, Kind={kind}"
        raise errors.bad_request(f"cannot bind token to object of type {gvk}")
    obj = ctx.store_view.get_object("", plural, namespace, name)
    if obj is None:
        raise errors.not_found(plural, name)
    if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName", "default") != sa_name:
        raise errors.bad_request(
            f'cannot bind token for serviceaccount "{sa_name}" to pod running with different '
            "serviceaccount name."
        )
    uid = str((obj.get("metadata") or {}).get("uid", ""))
    if ref.get("uid") and ref["uid"] != uid:
        raise errors.StatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {kind} "{name}": the UID in the bound object '
            f"reference ({ref['uid']}) does not match the UID in record. The object might have "
            "been deleted and then recreated",
            {"name": name, "kind": kind},
        )
    return BoundObject(kind, name, uid)


def token_request(ctx: ReviewContext, namespace: str, sa_name: str, body: KubeObject) -> KubeObject:
    """`serviceaccounts/<name>/token` create: a signed token for an existing ServiceAccount."""
    account = ctx.store_view.get_object("", "serviceaccounts", namespace, sa_name)
    if account is None:
        raise errors.not_found("serviceaccounts", sa_name)
    spec = body.get("spec") or {}
    seconds = _expiration(spec, sa_name)
    audiences = list(spec.get("audiences") or ctx.issuer.api_audiences)
    ref = spec.get("boundObjectRef")
    bound = _bound_object(ctx, namespace, sa_name, ref) if ref else None
    sa_uid = str((account.get("metadata") or {}).get("uid", ""))
    token, expiry = ctx.issuer.issue(
        namespace, sa_name, sa_uid, audiences, seconds, bound, now=ctx.time()
    )
    return {
        "kind": "TokenRequest",
        "apiVersion": f"{AUTHN}/v1",
        "metadata": {"name": sa_name, "namespace": namespace, "creationTimestamp": None},
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds,
            "boundObjectRef": dict(ref) if ref else None,
        },
        "status": {"token": token, "expirationTimestamp": _rfc3339(expiry)},
    }
