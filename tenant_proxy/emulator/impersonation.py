"""Impersonation, as kube-apiserver's WithImpersonation filter applies it.

Each requested identity part (user or service account, every group, every extra value, the
uid) is one authorization check with verb `impersonate`; the first denial is answered 403 with
the real server's message. Without any Impersonate-* header the caller is returned unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.identity import (
    AUTHENTICATED,
    UNAUTHENTICATED,
    service_account_groups,
    split_service_account,
)
from tenant_proxy.emulator.types import Attributes, UserInfo

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
ANONYMOUS_NAME = "system:anonymous"
_AUTHN_GROUP = "authentication.k8s.io"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class Authorizer(Protocol):
    def authorize(self, user: UserInfo, attrs: Attributes) -> bool: ...


@dataclass(frozen=True)
class Request:
    """One thing to impersonate (an ObjectReference in the real filter)."""

    kind: str  # ServiceAccount | User | Group | UserExtra | UID
    name: str
    namespace: str = ""
    extra_key: str = ""

    def attributes(self) -> Attributes:
        resource, group, subresource = {
            "ServiceAccount": ("serviceaccounts", "", ""),
            "User": ("users", "", ""),
            "Group": ("groups", "", ""),
            "UserExtra": ("userextras", _AUTHN_GROUP, self.extra_key),
            "UID": ("uids", _AUTHN_GROUP, ""),
        }[self.kind]
        return Attributes(
            verb="impersonate",
            path="",
            resource_request=True,
            api_group=group,
            api_version="v1",
            resource=resource,
            subresource=subresource,
            namespace=self.namespace,
            name=self.name,
        )

    def go_repr(self) -> str:
        """As Go prints a v1.ObjectReference value with %v, for the 500 message."""
        api_version = f"{_AUTHN_GROUP}/v1" if self.kind in ("UserExtra", "UID") else ""
        fields = (self.kind, self.namespace, self.name, "", api_version, "", self.extra_key)
        return "{" + " ".join(fields) + "}"


def unescape_extra_key(key: str) -> str:
    """url.PathUnescape, keeping the key as given when its escapes are malformed."""
    if _BAD_ESCAPE.search(key):
        return key
    return unquote(key)


def requests_from(headers: Mapping[str, str] | CIMultiDictProxy[str]) -> list[Request]:
    """What the Impersonate-* headers ask for, in the filter's order; raises 500 for groups,
    extras or a uid without a user, as buildImpersonationRequests does."""
    found: list[Request] = []
    user = _first(headers, USER_HEADER)
    if user:
        sa = split_service_account(user)
        found.append(Request("ServiceAccount", sa[1], sa[0]) if sa else Request("User", user))
    found.extend(Request("Group", g) for g in _all(headers, GROUP_HEADER))
    for name, value in _items(headers):
        if name.lower().startswith(EXTRA_PREFIX):
            key = unescape_extra_key(name[len(EXTRA_PREFIX) :].lower())
            found.append(Request("UserExtra", value, extra_key=key))
    uid = _first(headers, UID_HEADER)
    if uid:
        found.append(Request("UID", uid))
    if found and not user:
        listed = " ".join(r.go_repr() for r in found)
        raise errors.internal_error(f"requested [{listed}] without impersonating a user")
    return found


def apply(
    user: UserInfo,
    headers: Mapping[str, str] | CIMultiDictProxy[str],
    authorizer: Authorizer,
) -> UserInfo:
    """The identity the request acts as; raises 403 when `user` may not impersonate it."""
    wanted = requests_from(headers)
    if not wanted:
        return user
    for request in wanted:
        attrs = request.attributes()
        if not authorizer.authorize(user, attrs):
            raise errors.forbidden(user, attrs)
    return impersonated_user(wanted, groups_given=bool(_all(headers, GROUP_HEADER)))


def impersonated_user(wanted: list[Request], *, groups_given: bool) -> UserInfo:
    name, uid = "", ""
    groups: list[str] = []
    extra: dict[str, tuple[str, ...]] = {}
    for r in wanted:
        if r.kind in ("User", "ServiceAccount"):
            name = r.name if r.kind == "User" else f"system:serviceaccount:{r.namespace}:{r.name}"
            if r.kind == "ServiceAccount" and not groups_given:
                groups.extend(service_account_groups(r.namespace))
        elif r.kind == "Group":
            groups.append(r.name)
        elif r.kind == "UserExtra":
            extra[r.extra_key] = (*extra.get(r.extra_key, ()), r.name)
        elif r.kind == "UID":
            uid = r.name
    return UserInfo(name, uid, tuple(_with_status_group(name, groups)), extra)


def _with_status_group(name: str, groups: list[str]) -> list[str]:
    # Impersonated users are authenticated unless they are anonymous (or say otherwise).
    if name != ANONYMOUS_NAME:
        if AUTHENTICATED in groups or UNAUTHENTICATED in groups:
            return groups
        return [*groups, AUTHENTICATED]
    return groups if UNAUTHENTICATED in groups else [*groups, UNAUTHENTICATED]


def _first(headers: Mapping[str, str] | CIMultiDictProxy[str], name: str) -> str:
    values = _all(headers, name)
    return values[0] if values else ""


def _all(headers: Mapping[str, str] | CIMultiDictProxy[str], name: str) -> list[str]:
    if isinstance(headers, CIMultiDictProxy):
        return headers.getall(name, [])
    return [v for k, v in headers.items() if k.lower() == name.lower()]


def _items(headers: Mapping[str, str] | CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    return list(headers.items())
