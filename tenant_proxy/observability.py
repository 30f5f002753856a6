"""Metrics, request logs and the audit trail.

One JSON line per request on the `tenant_proxy.access` logger (ISO-8601 time, request id,
source address, path, user, verb, resource, namespace, name, status, latency, whether
filtered) and audit lines on `tenant_proxy.audit`: by default one per filtered read naming the
end user and the tenants (the API server's own audit log sees only the proxy's identity for
those reads), or kube-apiserver's `audit.k8s.io/v1` Events under a policy (see audit.py).
Never a token, key or certificate body: only the fields below are ever logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tenant_proxy import audit, shared_metrics
from tenant_proxy.tenancy.model import GroupResource

if TYPE_CHECKING:
    from tenant_proxy.config import AuditSettings
    from tenant_proxy.identity import Identity
    from tenant_proxy.requestinfo import RequestInfo

access_log = logging.getLogger("tenant_proxy.access")
audit_log = logging.getLogger("tenant_proxy.audit")

_VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "connect"}
)


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
        source_ips=[entry.source] if entry.source else [],
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


# Seconds: from a few milliseconds (a cached read) to ten (a large list under load).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Prometheus metrics of one process, in their own registry (tests build many).

    With `shared_dir` (`--workers N`), the values live in that directory beside the other
    workers' and `exposition()` is the aggregate of all: counters and histograms summed, gauges
    by their `multiprocess_mode` over the live workers.
    """

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self._exposed = self.registry if shared_dir is None else _aggregate_of(shared_dir)
        r = self.registry
        self.requests = Counter(
            "tenant_proxy_requests_total",
            "Requests by listener, verb, resource and code.",
            ["listener", "verb", "resource", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "tenant_proxy_request_seconds",
            "Time to the end of the response (watches excluded).",
            ["listener", "verb"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.filtered_out = Counter(
            "tenant_proxy_objects_filtered_total",
            "Objects withheld from tenants.",
            ["resource"],
            registry=r,
        )
        self.in_flight = Gauge(
            "tenant_proxy_requests_in_flight",
            "Requests being served now (watches included).",
            ["listener"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.open_watches = Gauge(
            "tenant_proxy_open_watches",
            "Watches open now.",
            ["listener", "filtered"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.watches_cut = Counter(
            "tenant_proxy_watches_cut_total",
            "Filtered watches ended by the proxy: a client too slow for its queue "
            "(too_slow), or behind the watch cache's window (too_old).",
            ["reason"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "tenant_proxy_upstream_errors_total",
            "API server unreachable or too slow.",
            ["kind"],
            registry=r,
        )
        self.auth_failures = Counter(
            "tenant_proxy_authentication_failures_total",
            "Refused credentials by reason.",
            ["reason"],
            registry=r,
        )
        self.informer_synced = Gauge(
            "tenant_proxy_informer_synced",
            "1 once an informer has listed.",
            ["resource"],
            registry=r,
            # Across workers: 1 only when every live worker's informer has listed.
            multiprocess_mode="livemin",
        )
        self.build_info = Gauge(
            "tenant_proxy_build_info",
            "Always 1; the labels say which tenant-proxy and Python serve.",
            ["version", "python"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(_version(), sys.version.split()[0]).set(1)
        self.upstream_latency = Histogram(
            "tenant_proxy_upstream_request_seconds",
            "Time from sending a request to the API server to its response head (watches "
            "included: their head comes at once), by verb, resource and code.",
            ["verb", "resource", "code"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.config_reloads = Counter(
            "tenant_proxy_config_reloads_total",
            "Config file reloads (SIGHUP or file change) by outcome: applied or refused.",
            ["outcome"],
            registry=r,
        )

        self.connections_open = Gauge(
            "tenant_proxy_connections_open",
            "TCP connections open on a TLS listener now (handshakes included).",
            ["listener"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections_refused = Counter(
            "tenant_proxy_connections_refused_total",
            "Connections closed at accept: a cap on open connections was reached, or the "
            "client address's handshakes are queued longer than the handshake timeout.",
            ["listener", "reason"],
            registry=r,
        )
        self.handshakes_delayed = Counter(
            "tenant_proxy_handshakes_delayed_total",
            "TLS handshakes that waited for their turn: their client address started more than "
            "its burst, faster than limits.handshake_rate_per_address.",
            ["listener"],
            registry=r,
        )
        self.connections_closed = Counter(
            "tenant_proxy_connections_closed_total",
            "Connections the proxy closed because the client was too slow or its handshake failed.",
            ["listener", "reason"],
            registry=r,
        )

    def observe(self, entry: RequestLog) -> None:
        # Bounded label sets: unknown verbs and resources outside the filtered set are folded.
        verb = entry.verb if entry.verb in _VERBS else "other"
        self.requests.labels(entry.listener, verb, entry.resource or "-", str(entry.code)).inc()
        if verb != "watch":
            self.latency.labels(entry.listener, verb).observe(entry.seconds)
        if entry.dropped:
            self.filtered_out.labels(entry.resource).inc(entry.dropped)
        if entry.code in (502, 503, 504):
            self.upstream_errors.labels(str(entry.code)).inc()

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason[:64]).inc()

    def upstream_request(self, verb: str, resource: str, code: str, seconds: float) -> None:
        """One request to the API server answered (`code` "error" when none came)."""
        verb = verb if verb in _VERBS else "other"
        # A resource the API server does not serve (404) would only grow the label set.
        self.upstream_latency.labels(verb, resource if code != "404" else "-", code).observe(
            seconds
        )

    def exposition(self) -> bytes:
        """The text a scrape of /metrics answers."""
        return generate_latest(self._exposed)


def _aggregate_of(shared_dir: Path) -> CollectorRegistry:
    # prometheus-client chose where values go when it was imported: in this directory only if
    # the environment named it then (the parent sets it before starting the workers).
    if os.environ.get(shared_metrics.ENV) != str(shared_dir):
        raise RuntimeError(f"{shared_metrics.ENV} does not name {shared_dir}")
    # Its own registry: the collector already reads this process's values from the files.
    aggregate = CollectorRegistry()
    MultiProcessCollector(aggregate, path=str(shared_dir))  # type: ignore[no-untyped-call]
    return aggregate


def _version() -> str:
    try:
        return metadata.version("tenant-proxy")
    except metadata.PackageNotFoundError:
        return "unknown"


def iso_time(created: float) -> str:
    """A log record's time as ISO-8601 UTC with milliseconds (`2026-01-02T03:04:05.678Z`)."""
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields.

    An audit event record (`audit_event`) is written as the Event alone, as kube-apiserver's
    log backend writes its lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "audit_event", None)
        if isinstance(event, dict):
            return orjson.dumps(event).decode()
        doc: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def setup_logging(level: str, audit_file: str | None) -> None:
    """JSON logs to stderr; audit lines to stdout, a file, or nowhere."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    audit_log.propagate = False
    audit_log.handlers.clear()
    if audit_file is None:
        audit_log.disabled = True
        return
    audit_log.disabled = False
    audit_handler: logging.Handler = (
        logging.StreamHandler(sys.stdout) if audit_file == "-" else logging.FileHandler(audit_file)
    )
    audit_handler.setFormatter(JSONFormatter())
    audit_log.addHandler(audit_handler)
    audit_log.setLevel(logging.INFO)
