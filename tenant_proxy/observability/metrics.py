"""Prometheus metrics of a proxy process, and their aggregate over `--workers N`."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tenant_proxy import shared_metrics
from tenant_proxy.observability.request_log import RequestLog

_VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "connect"}
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
            "Connections closed at accept: a cap on open connections was reached (listener_cap, "
            "address_cap), or a paced address's turn is further off than the handshake "
            "timeout (paced).",
            ["listener", "reason"],
            registry=r,
        )
        self.handshakes_delayed = Counter(
            "tenant_proxy_handshakes_delayed_total",
            "TLS handshakes that waited for their turn: their client address had more "
            "connections closed for refused bodies than limits.reconnect_burst_after_refusals.",
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
