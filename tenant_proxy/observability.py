"""Metrics, request logs and the audit trail.

One JSON line per request on the `tenant_proxy.access` logger (user, verb, resource, namespace,
name, status, latency, bytes, whether filtered) and, for filtered reads, an audit line naming
the end user: the API server's own audit log sees only the proxy's identity for those reads.
Never a token, key or certificate body: only the fields below are ever logged.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tenant_proxy import shared_metrics
from tenant_proxy.tenancy.model import GroupResource

if TYPE_CHECKING:
    from tenant_proxy.requestinfo import RequestInfo

access_log = logging.getLogger("tenant_proxy.access")
audit_log = logging.getLogger("tenant_proxy.audit")

_VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "connect"}
)


@dataclass
class RequestLog:
    """The fields of one request's log line (and its metric labels)."""

    listener: str
    method: str
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

    def describe(self, info: RequestInfo) -> None:
        self.verb = info.verb
        self.resource = (
            str(GroupResource(info.api_group, info.resource)) if info.is_resource else ""
        )
        self.subresource = info.subresource
        self.namespace = info.namespace
        self.name = info.name

    def emit(self) -> None:
        # vars(), not dataclasses.asdict: this runs for every request, and the fields are flat.
        fields = {k: v for k, v in vars(self).items() if v not in ("", 0, False)}
        fields["code"] = self.code
        fields["ms"] = round(self.seconds * 1000, 2)
        fields.pop("seconds", None)
        access_log.info("request", extra={"fields": fields})
        if self.filtered:
            audit_log.info(
                "filtered read",
                extra={
                    "fields": {
                        "user": self.user,
                        "verb": self.verb,
                        "resource": self.resource,
                        "name": self.name,
                        "code": self.code,
                        "dropped": self.dropped,
                        "decision": "filtered",
                    }
                },
            )


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
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
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
