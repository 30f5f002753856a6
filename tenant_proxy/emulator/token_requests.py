"""TokenRequest: `serviceaccounts/<name>/token` create, a token signed for an existing account."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.clock import rfc3339
from tenant_proxy.emulator.identity import BoundObject
from tenant_proxy.emulator.reviews import AUTHN, ReviewContext, invalid
from tenant_proxy.emulator.types import KubeObject

DEFAULT_TOKEN_SECONDS = 3600
MIN_TOKEN_SECONDS = 600
MAX_TOKEN_SECONDS = 1 << 32


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
    raise invalid("TokenRequest", AUTHN, name, [("spec.expirationSeconds", message)])


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
        "status": {"token": token, "expirationTimestamp": rfc3339(expiry)},
    }
