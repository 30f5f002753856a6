"""A client's own impersonation request (`kubectl --as`, `--as-group`), honoured only when allowed.

The caller authenticated as A and asks to act as B. As kube-apiserver does, each requested user
(or ServiceAccount), group, extra value and uid is checked with an access review of verb
`impersonate`: the user first (a denial ends it, as in kube-apiserver), then all the others
concurrently (users with hundreds of groups are common and sequential reviews time out:
capsule-proxy #1028); `CachedAccessReview` remembers answers briefly. Any denial is 403
with the real server's message; groups, extra or uid without a user are refused as the real
server refuses them (500 InternalError).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tenant_proxy import status
from tenant_proxy.auth.base import header_values, unescape_extra_key
from tenant_proxy.identity import Identity

log = logging.getLogger(__name__)

AccessReview = Callable[[Identity, Mapping[str, str]], Awaitable[bool]]
"""Whether `identity` may do what the SubjectAccessReview `resourceAttributes` describe."""

_EXTRA_PREFIX = "impersonate-extra-"
_SA_PREFIX = "system:serviceaccount:"
_AUTHN_GROUP = "authentication.k8s.io"


@dataclass(frozen=True)
class ImpersonationRequest:
    """Who the client asked to act as, from its Impersonate-* headers."""

    user: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    uid: str = ""


def requested_impersonation(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> ImpersonationRequest | None:
    """The client's impersonation request; None when it asks for none.

    Raises status.ApiError: 500 for groups/extra/uid without a user (as kube-apiserver), 400
    for a repeated Impersonate-User or Impersonate-Uid (kube-apiserver would take the first
    silently; a proxy should not guess).
    """
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    users = header_values(pairs, "Impersonate-User")
    groups = tuple(header_values(pairs, "Impersonate-Group"))
    uids = header_values(pairs, "Impersonate-Uid")
    extra = _requested_extra(pairs)
    if len(users) > 1 or len(uids) > 1:
        raise status.bad_request("Impersonate-User and Impersonate-Uid may be given once")
    user = users[0] if users else ""
    if not user:
        if groups or extra or any(uids):
            raise status.internal_error(
                f"requested {_describe(groups, extra, uids)} without impersonating a user"
            )
        return None
    return ImpersonationRequest(
        user=user, groups=groups, extra=MappingProxyType(extra), uid=uids[0] if uids else ""
    )


def _requested_extra(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    extra: dict[str, tuple[str, ...]] = {}
    for name, value in pairs:
        if name.lower().startswith(_EXTRA_PREFIX) and len(name) > len(_EXTRA_PREFIX):
            key = unescape_extra_key(name[len(_EXTRA_PREFIX) :])
            extra[key] = (*extra.get(key, ()), value)
    return extra


def _describe(
    groups: tuple[str, ...], extra: Mapping[str, tuple[str, ...]], uids: list[str]
) -> str:
    refs = [f"{{Group  {g}    }}" for g in groups]
    refs += [f"{{UserExtra  {v}    {k}}}" for k, vs in extra.items() for v in vs]
    refs += [f"{{UID  {u}    }}" for u in uids if u]
    return "[" + " ".join(refs) + "]"


def _service_account(user: str) -> tuple[str, str] | None:
    if not user.startswith(_SA_PREFIX):
        return None
    parts = user[len(_SA_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def _attributes(
    resource: str, name: str, group: str = "", namespace: str = "", subresource: str = ""
) -> dict[str, str]:
    attrs = {
        "verb": "impersonate",
        "group": group,
        "resource": resource,
        "subresource": subresource,
        "namespace": namespace,
        "name": name,
    }
    return {k: v for k, v in attrs.items() if v or k in ("verb", "resource", "group")}


def impersonation_checks(request: ImpersonationRequest) -> list[dict[str, str]]:
    """The access reviews a request needs, in kube-apiserver's order: user, groups, extra, uid."""
    sa = _service_account(request.user)
    checks = [
        _attributes("serviceaccounts", sa[1], namespace=sa[0])
        if sa
        else _attributes("users", request.user)
    ]
    checks += [_attributes("groups", g) for g in request.groups]
    checks += [
        _attributes("userextras", v, group=_AUTHN_GROUP, subresource=k)
        for k, vs in request.extra.items()
        for v in vs
    ]
    if request.uid:
        checks.append(_attributes("uids", request.uid, group=_AUTHN_GROUP))
    return checks


def denial(caller: Identity, attrs: Mapping[str, str]) -> status.ApiError:
    """The 403 kube-apiserver answers when `caller` may not impersonate what `attrs` name."""
    resource, group, name = attrs["resource"], attrs.get("group", ""), attrs.get("name", "")
    message = status.forbidden_message(
        caller.user,
        "impersonate",
        resource,
        group=group,
        name=name,
        namespace=attrs.get("namespace", ""),
        subresource=attrs.get("subresource", ""),
    )
    return status.forbidden(message, kind=resource, name=name, group=group)


def impersonated_identity(caller: Identity, request: ImpersonationRequest) -> Identity:
    """Who the caller becomes once every check passed."""
    groups = request.groups
    sa = _service_account(request.user)
    if sa and not groups:
        # As kube-apiserver: a ServiceAccount's groups follow from its name.
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{sa[0]}")
    return Identity(
        user=request.user, groups=groups, extra=request.extra, uid=request.uid, method=caller.method
    )


async def _allowed(identity: Identity, attrs: Mapping[str, str], review: AccessReview) -> bool:
    try:
        return await review(identity, attrs)
    except Exception as err:  # an unanswered review denies, as kube-apiserver's authorizer does
        log.warning("impersonation review failed: %s", type(err).__name__)
        return False


async def authorize_impersonation(
    identity: Identity, request: ImpersonationRequest, access_review: AccessReview
) -> Identity:
    """The identity to act as, after every check passed; raises status.ApiError 403 otherwise.

    The user (or ServiceAccount) is reviewed first and a denial ends it there, as in
    kube-apiserver's impersonation filter (it stops at the first denial): a caller who may not
    impersonate cannot make one request cost a review for each of the ~100 groups it names.
    The rest are reviewed concurrently.
    """
    user, *rest = impersonation_checks(request)
    if not await _allowed(identity, user, access_review):
        raise denial(identity, user)
    answers = await asyncio.gather(*(_allowed(identity, c, access_review) for c in rest))
    for attrs, allowed in zip(rest, answers, strict=True):
        if not allowed:
            raise denial(identity, attrs)
    return impersonated_identity(identity, request)


def _review_key(identity: Identity, attrs: Mapping[str, str]) -> tuple[Any, ...]:
    extra = tuple(sorted(identity.extra.items()))
    return (identity.user, identity.groups, extra, identity.uid, tuple(sorted(attrs.items())))


class CachedAccessReview:
    """An AccessReview that remembers answers for `ttl` seconds, coalesces identical reviews
    under way, and runs at most `max_concurrency` upstream at once. Errors are never cached."""

    def __init__(
        self,
        review: AccessReview,
        ttl: float = 10,
        max_entries: int = 10_000,
        max_concurrency: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review = review
        self._ttl = ttl
        self._max_entries = max_entries
        self._limit = asyncio.Semaphore(max_concurrency)
        self._clock = clock
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, bool]] = OrderedDict()
        self._inflight: dict[tuple[Any, ...], asyncio.Task[bool]] = {}

    async def __call__(self, identity: Identity, attrs: Mapping[str, str]) -> bool:
        key = _review_key(identity, attrs)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(key)
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._reviewed(key, identity, attrs))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(task)

    def _settled(self, key: tuple[Any, ...], task: asyncio.Task[bool]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # seen, even when every waiter went away

    async def _reviewed(
        self, key: tuple[Any, ...], identity: Identity, attrs: Mapping[str, str]
    ) -> bool:
        async with self._limit:
            allowed = await self._review(identity, attrs)
        self._cache[key] = (self._clock() + self._ttl, allowed)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return allowed


def sar_spec(identity: Identity, attrs: Mapping[str, str]) -> dict[str, Any]:
    """The SubjectAccessReview `spec` asking whether `identity` may do what `attrs` name."""
    spec: dict[str, Any] = {"user": identity.user, "resourceAttributes": dict(attrs)}
    if identity.groups:
        spec["groups"] = list(identity.groups)
    if identity.extra:
        spec["extra"] = {k: list(v) for k, v in identity.extra.items()}
    if identity.uid:
        spec["uid"] = identity.uid
    return spec


class Delegation:
    """The listener's step after authentication: the caller, or whom it may act as.

    `review` is usually a CachedAccessReview around the upstream SubjectAccessReview call.
    """

    def __init__(self, review: AccessReview) -> None:
        self._review = review

    async def __call__(
        self, identity: Identity, headers: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> Identity:
        request = requested_impersonation(headers)
        if request is None:
            return identity
        return await authorize_impersonation(identity, request, self._review)
