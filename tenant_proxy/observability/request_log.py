"""One JSON line per request on the `tenant_proxy.access` logger: ISO-8601 time, request id,
source address, path, user, verb, resource, namespace, name, status, latency, whether filtered.

A `RequestLog` also carries what the request's metric labels and audit events need.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenant_proxy.kube.resources import GroupResource

if TYPE_CHECKING:
    from tenant_proxy.identity import Identity
    from tenant_proxy.requestinfo import RequestInfo

access_log = logging.getLogger("tenant_proxy.access")

# What of a RequestLog goes on the access line (the rest serves the audit events).
_ACCESS_FIELDS = (
    "listener",
    "method",
    "request_id",
    "source",
    "path",
    "user",
    "auth_method",
    "auth_failure",
    "verb",
    "resource",
    "subresource",
    "namespace",
    "name",
    "filtered",
    "dropped",
    "tenants",
)
_AUDIT_ID_MAX = 128


def request_id(client_sent: str | None) -> str:
    """The request's id: the client's `Audit-Id` if it sent a sane one (kube-apiserver keeps a
    caller's, and the proxy sends it on so both audit logs name the request alike), else a new
    UUID as kube-apiserver makes."""
    sent = client_sent or ""
    if 0 < len(sent) <= _AUDIT_ID_MAX and all(c.isalnum() or c in "-_.:" for c in sent):
        return sent if sent.isascii() else str(uuid.uuid4())
    return str(uuid.uuid4())


@dataclass
class RequestLog:
    """The fields of one request's log line, its metric labels and its audit events."""

    listener: str
    method: str
    request_id: str = ""
    source: str = ""
    path: str = ""
    user: str = ""
    auth_method: str = ""
    auth_failure: str = ""
    verb: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    code: int = 0
    seconds: float = 0.0
    filtered: bool = False
    dropped: int = 0
    tenants: str = ""
    # For the audit events only.
    # The client's X-Forwarded-For and X-Real-Ip, read only when an audit event is made.
    forwarded_for: str | None = None
    real_ip: str | None = None
    query: str = ""
    user_agent: str = ""
    received: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    authenticated: Identity | None = None
    impersonated: Identity | None = None
    info: RequestInfo | None = None
    reason: str = ""
    message: str = ""

    def describe(self, info: RequestInfo) -> None:
        self.info = info
        self.verb = info.verb
        self.resource = (
            str(GroupResource(info.api_group, info.resource)) if info.is_resource else ""
        )
        self.subresource = info.subresource
        self.namespace = info.namespace
        self.name = info.name

    def emit(self) -> None:
        fields: dict[str, Any] = {
            k: v for k in _ACCESS_FIELDS if (v := getattr(self, k)) not in ("", 0, False)
        }
        fields["code"] = self.code
        fields["ms"] = round(self.seconds * 1000, 2)
        access_log.info("request", extra={"fields": fields})
