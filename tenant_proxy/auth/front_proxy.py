"""Identities asserted by a trusted front proxy, believed only from configured source CIDRs.

Two forms: kube-apiserver's request headers (X-Remote-User, X-Remote-Group repeated,
X-Remote-Extra-<key>) or Envoy's X-Forwarded-Client-Cert (the client certificate the front
proxy verified; user = CN, groups = every O). From any other source these headers are not
credentials at all (None); the listener strips them before anything goes upstream.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from tenant_proxy.auth.base import (
    AuthenticationError,
    Credentials,
    header_values,
    unescape_extra_key,
)
from tenant_proxy.identity import Identity
from tenant_proxy.pki import subject_identity

XFCC = "X-Forwarded-Client-Cert"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FrontProxySettings:
    """A trusted front proxy (an ingress or service mesh that authenticates callers itself)."""

    trusted_cidrs: tuple[str, ...]
    """Source addresses the front proxy connects from; required, never empty."""
    source: Literal["headers", "xfcc"] = "headers"
    """Which form the front proxy sends: X-Remote-* headers or X-Forwarded-Client-Cert."""
    allowed_client_names: tuple[str, ...] = ()
    """When set, the front proxy must also present a client certificate with one of these CNs."""
    user_header: str = "X-Remote-User"
    """Header naming the user (headers form)."""
    group_header: str = "X-Remote-Group"
    """Header naming one group, repeated per group (headers form)."""
    extra_header_prefix: str = "X-Remote-Extra-"
    """Prefix of headers naming extra attributes (headers form)."""

    def __post_init__(self) -> None:
        if not self.trusted_cidrs:
            raise ValueError("a front proxy needs at least one trusted source CIDR")
        for cidr in self.trusted_cidrs:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError on a bad CIDR

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.trusted_cidrs)


def is_trusted_source(remote_ip: str, networks: tuple[Network, ...]) -> bool:
    """Whether `remote_ip` (IPv4, IPv6 or IPv4-mapped IPv6) lies in one of `networks`."""
    try:
        address = ipaddress.ip_address(remote_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _split_unquoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_xfcc(header: str) -> list[dict[str, str]]:
    """The elements of an X-Forwarded-Client-Cert value, each as {key (lower-case): value}."""
    elements = []
    for element in _split_unquoted(header, ","):
        pairs: dict[str, str] = {}
        for pair in _split_unquoted(element, ";"):
            key, sep, value = pair.partition("=")
            if sep:
                pairs.setdefault(key.strip().lower(), _unquote(value))
        if pairs:
            elements.append(pairs)
    return elements


def _xfcc_certificate(header: str, now: dt.datetime) -> x509.Certificate:
    elements = parse_xfcc(header)
    # Each proxy appends its element; the last one describes our direct peer's client.
    pem = elements[-1].get("cert") if elements else None
    if not pem:
        raise AuthenticationError("X-Forwarded-Client-Cert carries no certificate")
    try:
        cert = x509.load_pem_x509_certificate(urllib.parse.unquote(pem).encode())
    except ValueError:
        raise AuthenticationError("X-Forwarded-Client-Cert certificate unreadable") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthenticationError("forwarded client certificate outside its validity")
    return cert


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FrontProxyAuthenticator:
    """Believes a front proxy's identity headers when the connection comes from a trusted CIDR."""

    def __init__(
        self, settings: FrontProxySettings, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self._settings = settings
        self._networks = settings.networks
        self._clock = clock

    async def authenticate(self, creds: Credentials) -> Identity | None:
        if not self._is_front_proxy(creds):
            return None
        if self._settings.source == "xfcc":
            return self._from_xfcc(creds.headers)
        return self._from_headers(creds.headers)

    def _is_front_proxy(self, creds: Credentials) -> bool:
        if not is_trusted_source(creds.remote_ip, self._networks):
            return False
        names = self._settings.allowed_client_names
        if not names:
            return True
        if creds.peer_cert is None:
            return False
        return subject_identity(creds.peer_cert)[0] in names

    def _from_xfcc(self, headers: Mapping[str, str]) -> Identity | None:
        values = header_values(headers, XFCC)
        if not values:
            return None
        cert = _xfcc_certificate(",".join(values), self._clock())
        user, groups = subject_identity(cert)
        if not user.strip():
            raise AuthenticationError("forwarded client certificate has no common name")
        return Identity(user=user, groups=groups, method="front-proxy")

    def _from_headers(self, headers: Mapping[str, str]) -> Identity | None:
        users = header_values(headers, self._settings.user_header)
        if not users:
            return None
        if len(users) > 1 or not users[0].strip():
            raise AuthenticationError("front proxy sent an empty or repeated user header")
        prefix = self._settings.extra_header_prefix.lower()
        extra: dict[str, list[str]] = {}
        for key, value in headers.items():
            if key.lower().startswith(prefix) and len(key) > len(prefix):
                extra.setdefault(unescape_extra_key(key[len(prefix) :]), []).append(value)
        return Identity(
            user=users[0],
            groups=tuple(header_values(headers, self._settings.group_header)),
            extra={key: tuple(values) for key, values in extra.items()},
            method="front-proxy",
        )
