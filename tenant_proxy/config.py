"""Typed settings: the shape of the one YAML file (`settings_file` reads and validates it)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tenant_proxy.tenancy.settings import TenancySettings


class _Strict(BaseModel):
    # Unknown keys are mistakes (a typo would otherwise silently disable a setting).
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenerSettings(_Strict):
    """One HTTPS listener."""

    address: str = Field("0.0.0.0:9443", description="HOST:PORT to bind.")

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT with a port from 0 to 65535")
        return value

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class TLSSettings(_Strict):
    """The listeners' TLS material; re-read when the files change."""

    cert_file: Path = Field(description="Server certificate chain (PEM).")
    key_file: Path = Field(description="Server private key (PEM).")
    client_ca_file: Path | None = Field(
        None, description="CA bundle that verifies client certificates; none disables x509 auth."
    )
    reload_interval_seconds: float = Field(10.0, gt=0, description="How often files are checked.")


class LimitSettings(_Strict):
    """Bounds on what one client may send or make the proxy hold."""

    max_body_bytes: int = Field(3 * 1024 * 1024, gt=0, description="Request body limit (413).")
    max_line_bytes: int = Field(16 * 1024, gt=0, description="Request line limit.")
    max_header_bytes: int = Field(64 * 1024, gt=0, description="One header field's limit.")
    max_watch_event_bytes: int = Field(
        32 * 1024 * 1024,
        gt=0,
        description="Longest event line the proxy's informers take from an upstream watch; "
        "past it, the resource is listed again instead.",
    )
    watch_buffer_events: int = Field(
        1000,
        gt=0,
        description="Event lines a filtered watch queues past its connection's write buffer for "
        "a client that reads slowly.",
    )
    watch_slow_client_seconds: float = Field(
        10.0,
        gt=0,
        description="A filtered watch with that backlog whose client takes nothing for this "
        "long is cut (ERROR 429).",
    )
    lists_from_cache: bool = Field(
        True,
        description="Answer filtered lists from the watch cache when its consistency rules "
        "allow (else, and when off, they are read upstream and rewritten).",
    )
    list_freshness_seconds: float = Field(
        0.25,
        gt=0,
        description="How long a consistent list waits for the cache to reach the API server's "
        "current resourceVersion before it is read upstream instead.",
    )
    watch_cache_events: int = Field(
        10_000,
        gt=0,
        description="Recent changes the watch cache keeps per filtered resource: a watch can "
        "resume from a resourceVersion this far back (older: 410, clients re-list).",
    )
    watch_cache_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Bytes of recent changes kept per filtered resource."
    )
    watch_bookmark_seconds: float = Field(
        30.0, gt=0, description="A quiet filtered watch gets a BOOKMARK this often (if asked)."
    )
    max_filtered_list_bytes: int = Field(
        512 * 1024 * 1024,
        gt=0,
        description="Largest upstream page the proxy reads to rewrite, and largest answer it "
        "builds from them (beyond: 502, or 500 asking the client to page).",
    )
    filtered_list_reads: int = Field(
        8, gt=0, description="Rewritten lists read at once; more wait (each holds a page or two)."
    )
    filtered_list_page: int = Field(
        5000, gt=0, description="Upstream page size when the proxy reads a list to rewrite it."
    )
    # The edge of the tenant and admin listeners, with kube-apiserver's defaults
    # (k8s.io/apiserver secure_serving.go: ReadHeaderTimeout 32 s, which Go's server also
    # applies to the TLS handshake; IdleTimeout 90 s). Watches, exec, port-forward and other
    # upgrades are never cut by these: they apply only while no request is being served.
    tls_handshake_timeout_seconds: float = Field(
        32.0, gt=0, description="Time from TCP accept to a completed TLS handshake."
    )
    header_timeout_seconds: float = Field(
        32.0,
        gt=0,
        description="Time to send a whole request head: from the handshake, or from the "
        "first byte of a request on a kept-alive connection.",
    )
    idle_timeout_seconds: float = Field(
        90.0, gt=0, description="How long a kept-alive connection may wait for its next request."
    )
    max_header_count: int = Field(128, gt=0, description="Header fields in one request.")
    max_connections: int = Field(
        16384,
        gt=0,
        description="Open connections per listener (handshakes included); beyond, new ones are "
        "closed at accept. Each watch holds one: 10,000 watches per worker fit.",
    )
    max_connections_per_address: int = Field(
        1024,
        ge=0,
        description="Open connections from one client address per listener; 0: no cap (behind "
        "a source-NATing load balancer or ingress, every client shares one address).",
    )
    reconnect_rate_after_refusals: float = Field(
        3.0,
        ge=0,
        description="Once a client address has had more connections closed for a refused body "
        "(256 KiB or more left unread) than its burst, each of its new connections waits its "
        "turn before the TLS handshake, this many per second (refused at accept if the wait "
        "would pass the handshake timeout). 0: never paced.",
    )
    reconnect_burst_after_refusals: int = Field(
        1, gt=0, description="Connections an address may have closed unread before it is paced."
    )


class UpstreamSettings(_Strict):
    """How the proxy reaches kube-apiserver with its own identity."""

    kubeconfig: Path | None = Field(None, description="A kubeconfig file (current context).")
    context: str | None = Field(None, description="Context in the kubeconfig (default: current).")
    in_cluster: bool = Field(False, description="Use the pod's ServiceAccount and KUBERNETES_*.")
    server: str | None = Field(None, description="API server URL, when no kubeconfig is given.")
    ca_file: Path | None = Field(None, description="CA bundle of the API server.")
    client_cert_file: Path | None = Field(None, description="Client certificate (PEM).")
    client_key_file: Path | None = Field(None, description="Client key (PEM).")
    token_file: Path | None = Field(None, description="Bearer token file, re-read as it rotates.")
    connect_timeout_seconds: float = Field(5.0, gt=0, description="TCP+TLS connect timeout.")
    response_timeout_seconds: float = Field(
        60.0, gt=0, description="Time to the first response byte (not applied to watch bodies)."
    )
    connect_retries: int = Field(
        2, ge=0, description="Retries of idempotent requests on connect errors."
    )


class OIDCSettings(_Strict):
    """One trusted OIDC issuer."""

    issuer_url: str
    audiences: list[str] = Field(min_length=1)
    username_claim: str = "sub"
    username_prefix: str | None = Field(
        None,
        description="Default: '<issuer_url>#' unless the claim is 'email' (as kube-apiserver).",
    )
    groups_claim: str = "groups"
    groups_prefix: str = ""
    required_claims: dict[str, str] = Field(default_factory=dict)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwks_file: Path | None = Field(None, description="Static JWKS instead of discovery.")
    ca_file: Path | None = Field(None, description="CA for the issuer's HTTPS endpoints.")
    leeway_seconds: int = Field(30, ge=0, le=300)
    jwks_refresh_seconds: float = Field(300, gt=0, description="Background key refresh period.")
    jwks_min_refetch_seconds: float = Field(
        10, gt=0, description="At most one key fetch per this period, however many unknown kids."
    )


class TokenReviewSettings(_Strict):
    """Validate other bearer tokens (ServiceAccount tokens) with a TokenReview upstream."""

    enabled: bool = True
    audiences: list[str] = Field(default_factory=list)


class FrontProxySettings(_Strict):
    """Identity from a trusted front proxy's headers, only from these source networks."""

    enabled: bool = False
    trusted_cidrs: list[str] = Field(
        default_factory=list, description="Where the front proxy connects from (required)."
    )
    source: Literal["headers", "xfcc"] = Field(
        "headers", description="X-Remote-User/Group/Extra-* headers or X-Forwarded-Client-Cert."
    )
    allowed_client_names: list[str] = Field(
        default_factory=list,
        description="If set, the front proxy's own certificate CN must be one.",
    )

    @model_validator(mode="after")
    def _cidrs_when_enabled(self) -> FrontProxySettings:
        if self.enabled and not self.trusted_cidrs:
            raise ValueError("trusted_cidrs is required when the front proxy is enabled")
        for cidr in self.trusted_cidrs:
            ipaddress.ip_network(cidr, strict=False)
        return self


class AuthenticationSettings(_Strict):
    """The authentication chain, tried in this order: x509, static tokens, OIDC, TokenReview."""

    x509: bool = Field(
        True, description="Accept client certificates verified by tls.client_ca_file."
    )
    oidc: list[OIDCSettings] = Field(default_factory=list)
    token_review: TokenReviewSettings = Field(default_factory=TokenReviewSettings)
    static_tokens_file: Path | None = Field(None, description="kube-apiserver token CSV (demos).")
    front_proxy: FrontProxySettings = Field(default_factory=FrontProxySettings)
    anonymous: bool = Field(False, description="Let credential-less requests through as anonymous.")


class AdminSettings(_Strict):
    """Who may use the admin listener (no filtering)."""

    listener: ListenerSettings = Field(
        default_factory=lambda: ListenerSettings(address="127.0.0.1:9444")
    )
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=lambda: ["system:masters"])


class AuditRuleSettings(_Strict):
    """One audit policy rule; it applies when each of its non-empty lists names the request's."""

    level: Literal["None", "Metadata"]
    verbs: list[str] = Field(default_factory=list, description="get, list, watch, create...")
    resources: list[str] = Field(
        default_factory=list,
        description="'nodes', 'storageclasses.storage.k8s.io' (resource.group); empty: any.",
    )


class AuditSettings(_Strict):
    """What goes to `audit_file`, and in which format."""

    format: Literal["tenant-proxy", "audit.k8s.io/v1"] = Field(
        "tenant-proxy",
        description="'tenant-proxy': one line per filtered read (end user, tenants, hidden "
        "count). 'audit.k8s.io/v1': kube-apiserver's Event JSON lines for every request the "
        "policy keeps (stages, user, impersonatedUser, objectRef, responseStatus, sourceIPs).",
    )
    rules: list[AuditRuleSettings] = Field(
        default_factory=list, description="audit.k8s.io/v1 only: the first matching rule decides."
    )
    default_level: Literal["None", "Metadata"] = Field(
        "Metadata", description="audit.k8s.io/v1 only: the level when no rule matches."
    )


class ObservabilitySettings(_Strict):
    metrics: ListenerSettings | None = Field(
        default_factory=lambda: ListenerSettings(address="127.0.0.1:9090"),
        description="Plain-HTTP /metrics, /healthz, /livez, /readyz; null disables.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    audit_file: str | None = Field("-", description="'-' for stdout, a path, or null for none.")
    audit: AuditSettings = Field(default_factory=AuditSettings)


class Settings(_Strict):
    """Everything `tenant-proxy serve` needs."""

    listener: ListenerSettings = Field(default_factory=ListenerSettings)
    tls: TLSSettings
    limits: LimitSettings = Field(default_factory=LimitSettings)
    upstream: UpstreamSettings
    authentication: AuthenticationSettings = Field(default_factory=AuthenticationSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    tenancy: TenancySettings = Field(default_factory=TenancySettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    workers: int = Field(1, ge=1, le=64)
    drain_seconds: float = Field(
        25.0, ge=0, description="SIGTERM: how long in-flight requests get."
    )
