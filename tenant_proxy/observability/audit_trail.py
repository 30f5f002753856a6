"""Audit lines on the `tenant_proxy.audit` logger: by default one per filtered read naming the
end user and the tenants (the API server's own audit log sees only the proxy's identity for
those reads), or kube-apiserver's `audit.k8s.io/v1` Events under a policy (see audit.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from tenant_proxy import audit
from tenant_proxy.observability.request_log import RequestLog

if TYPE_CHECKING:
    from tenant_proxy.config import AuditSettings
    from tenant_proxy.identity import Identity

audit_log = logging.getLogger("tenant_proxy.audit")


def _user(identity: Identity) -> dict[str, Any]:
    return audit.user_info(identity.user, identity.groups, identity.uid, identity.extra)


def audit_facts(entry: RequestLog) -> audit.Facts:
    """What the audit events of `entry` say."""
    info = entry.info
    facts = audit.Facts(
        audit_id=entry.request_id,
        request_uri=entry.path + (f"?{entry.query}" if entry.query else ""),
        verb=entry.verb or entry.method.lower(),
        received=entry.received,
        source_ips=audit.source_ips(entry.forwarded_for, entry.real_ip, entry.source),
        user_agent=entry.user_agent,
        user=_user(entry.authenticated) if entry.authenticated is not None else {},
        code=entry.code,
        reason=entry.reason,
        message=entry.message,
    )
    if entry.impersonated is not None:
        facts.impersonated_user = _user(entry.impersonated)
    if info is not None and info.is_resource:
        facts.object_ref = audit.object_ref(
            info.resource,
            info.namespace,
            info.name,
            info.api_group,
            info.api_version,
            info.subresource,
        )
    notes = {
        audit.ANNOTATION_TENANTS: entry.tenants,
        audit.ANNOTATION_AUTHENTICATION: entry.auth_method,
        audit.ANNOTATION_DECISION: "filtered" if entry.filtered else "",
        audit.ANNOTATION_HIDDEN: str(entry.dropped) if entry.filtered else "",
    }
    facts.annotations = {k: v for k, v in notes.items() if v}
    return facts


class Auditor:
    """Writes the audit lines of requests, in the configured format and under its policy."""

    def __init__(self, settings: AuditSettings | None = None) -> None:
        self.kubernetes = settings is not None and settings.format == "audit.k8s.io/v1"
        rules = settings.rules if settings is not None else []
        self.policy = audit.Policy(
            tuple(audit.Rule(r.level, frozenset(r.verbs), frozenset(r.resources)) for r in rules),
            settings.default_level if settings is not None else "Metadata",
        )

    def _wanted(self, entry: RequestLog) -> bool:
        verb = entry.verb or entry.method.lower()
        return self.kubernetes and self.policy.level(verb, entry.resource) != "None"

    def _write(self, entry: RequestLog, stage: audit.Stage) -> None:
        doc = audit.event(audit_facts(entry), stage, dt.datetime.now(dt.UTC))
        audit_log.info("audit event", extra={"audit_event": doc})

    def received(self, entry: RequestLog) -> None:
        """The caller is authenticated and the request classified."""
        if self._wanted(entry):
            self._write(entry, "RequestReceived")

    def started(self, entry: RequestLog) -> None:
        """A long-running answer (watch, upgrade) starts."""
        if audit.long_running(entry.verb, entry.code) and self._wanted(entry):
            self._write(entry, "ResponseStarted")

    def completed(self, entry: RequestLog) -> None:
        if not self.kubernetes:
            if entry.filtered:
                self._filtered_read(entry)
            return
        if self._wanted(entry):
            # Refused before anyone was authenticated: one event, as kube-apiserver writes it.
            authenticated = entry.authenticated is not None
            self._write(entry, "ResponseComplete" if authenticated else "ResponseStarted")

    @staticmethod
    def _filtered_read(entry: RequestLog) -> None:
        audit_log.info(
            "filtered read",
            extra={
                "fields": {
                    "request_id": entry.request_id,
                    "user": entry.user,
                    "tenants": entry.tenants,
                    "verb": entry.verb,
                    "resource": entry.resource,
                    "name": entry.name,
                    "code": entry.code,
                    "dropped": entry.dropped,
                    "decision": "filtered",
                }
            },
        )
