"""Which headers cross the proxy, and the impersonation headers it adds.

The order is the whole defence (capsule-proxy CVE-2022-23652, #188; Rancher CVE-2021-31999):
strip every credential, impersonation and hop-by-hop header the client sent, *then* add the
proxy's own. A client's `Connection` header only ever removes more of its own headers.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from tenant_proxy.status import ApiError, forbidden

__all__ = [
    "BEARER_PROTOCOL_PREFIX",
    "Impersonated",
    "forwarded_for",
    "impersonation_headers",
    "strip_client_headers",
    "strip_response_headers",
    "websocket_bearer",
]

Header = tuple[str, str]

BEARER_PROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."

# Names compare by their letters and digits only, lower-cased: `Impersonate_User`,
# `impersonate-user ` and `IMPERSONATE.USER` are all one name to some server on the way.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keepalive",
        "proxyconnection",
        "te",
        "trailer",
        "transferencoding",
        "upgrade",
        "proxyauthenticate",
    }
)
_CREDENTIALS = frozenset({"authorization", "proxyauthorization", "host"})
_CLIENT_PREFIXES = ("impersonate", "xremote")
# A client naming these in Connection must not change how the body it sends is framed or typed.
_NEVER_CONNECTION_NAMED = frozenset({"contentlength", "contenttype"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# client-go's headerKeyEscape: RFC 7230 token bytes stay, all others and `%` are %XX-escaped.
_EXTRA_KEY_KEEP = frozenset(
    b"!#$&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


class Impersonated(Protocol):
    """Who the proxy impersonates (identity.Identity satisfies it)."""

    @property
    def user(self) -> str: ...
    @property
    def groups(self) -> tuple[str, ...]: ...
    @property
    def extra(self) -> Mapping[str, tuple[str, ...]]: ...
    @property
    def uid(self) -> str: ...


def name_key(name: str) -> str:
    """The comparison key of a header name: ASCII letters and digits, lower-cased."""
    return "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())


def _is_client_controlled(key: str) -> bool:
    return key in _HOP_BY_HOP or key in _CREDENTIALS or key.startswith(_CLIENT_PREFIXES)


def _connection_named(headers: Iterable[Header]) -> frozenset[str]:
    named = {
        name_key(token)
        for name, value in headers
        if name_key(name) == "connection"
        for token in value.split(",")
    }
    return frozenset(named - _NEVER_CONNECTION_NAMED - {""})


def strip_client_headers(headers: Iterable[Header]) -> list[Header]:
    """The client's headers minus credentials, impersonation, hop-by-hop and front-proxy ones.

    Also dropped: headers the client's Connection names, and any header whose name is not an
    HTTP token or whose value could split a header line (a confused peer must never see
    something that reads as Authorization or Impersonate-*).
    """
    headers = list(headers)
    named = _connection_named(headers)
    return [
        (name, value)
        for name, value in headers
        if _TOKEN.fullmatch(name)
        and not _UNSAFE_VALUE.search(value)
        and not _is_client_controlled(key := name_key(name))
        and key not in named
    ]


def forwarded_for(headers: list[Header], client_ip: str) -> list[Header]:
    """The headers with the client's address appended to X-Forwarded-For, as the next hop
    expects of a proxy (Go's httputil.ReverseProxy, apimachinery's AppendForwardedForHeader):
    the client's own lines folded into one, `, `-separated, then its address. The API
    server's audit then names the client in `sourceIPs` before the proxy's own address."""
    if not client_ip:
        return headers
    # By name as Go's header map keys it (case-insensitive; `X_Forwarded_For` is another).
    prior = [value for name, value in headers if name.lower() == "x-forwarded-for"]
    rest = [(name, value) for name, value in headers if name.lower() != "x-forwarded-for"]
    return [*rest, ("X-Forwarded-For", ", ".join([*prior, client_ip]))]


def strip_response_headers(headers: Iterable[Header]) -> list[Header]:
    """The API server's response headers minus hop-by-hop ones and those its Connection names."""
    headers = list(headers)
    named = _connection_named(headers)
    return [
        (name, value)
        for name, value in headers
        if (key := name_key(name)) not in _HOP_BY_HOP and key not in named
    ]


def escape_extra_key(key: str) -> str:
    """An extra key as an `Impersonate-Extra-` suffix, escaped as client-go escapes it."""
    return "".join(
        chr(byte) if byte in _EXTRA_KEY_KEEP else f"%{byte:02X}" for byte in key.encode("utf-8")
    )


def impersonation_headers(identity: Impersonated) -> list[Header]:
    """Impersonate-User (exactly one, non-empty), -Group per group, -Extra-* per value, -Uid.

    Raises ApiError 403 for a name no header can carry faithfully (empty user, line breaks,
    or surrounding whitespace that HTTP would silently trim into another name).
    """
    user = _header_value("user", identity.user)
    if not user:
        raise forbidden("the caller has no user name to impersonate")
    headers: list[Header] = [("Impersonate-User", user)]
    headers += [
        ("Impersonate-Group", _header_value("group", group)) for group in identity.groups if group
    ]
    for key, values in identity.extra.items():
        if not key:
            raise forbidden("an extra attribute of the caller has an empty key")
        name = f"Impersonate-Extra-{escape_extra_key(key)}"
        headers += [(name, _header_value(f"extra {key!r}", value)) for value in values]
    if identity.uid:
        headers.append(("Impersonate-Uid", _header_value("uid", identity.uid)))
    return headers


def _header_value(what: str, value: str) -> str:
    if _UNSAFE_VALUE.search(value) or value != value.strip(" \t"):
        raise _unimpersonable(what, value)
    return value


def _unimpersonable(what: str, value: str) -> ApiError:
    return forbidden(f"cannot impersonate {what} {value!r}: not representable in a header")


def websocket_bearer(protocols_header: str) -> tuple[str | None, str]:
    """(token, other protocols) from a Sec-WebSocket-Protocol header, as kube-apiserver reads it.

    The token is None when no bearer subprotocol was offered and "" when one was offered but
    cannot count (two of them, bad base64url, not UTF-8, empty, or no other subprotocol left
    to agree on): the caller must refuse "" rather than fall back to another credential.
    """
    remaining: list[str] = []
    tokens: list[str] = []
    for protocol in (p.strip() for p in protocols_header.split(",")):
        if protocol.lower().startswith(BEARER_PROTOCOL_PREFIX):
            valid = protocol.startswith(BEARER_PROTOCOL_PREFIX)
            tokens.append(_decode_bearer(protocol[len(BEARER_PROTOCOL_PREFIX) :]) if valid else "")
        elif protocol:
            remaining.append(protocol)
    if not tokens:
        return None, ", ".join(remaining)
    if len(tokens) > 1 or not remaining:
        return "", ", ".join(remaining)
    return tokens[0], ", ".join(remaining)


def _decode_bearer(encoded: str) -> str:
    """base64.RawURLEncoding then UTF-8, strictly; "" when either fails."""
    if not _BASE64URL.fullmatch(encoded) or len(encoded) % 4 == 1:
        return ""
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
