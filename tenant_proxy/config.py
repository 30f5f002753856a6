"""Typed settings: one YAML file, validated once at start, with environment overrides.

Validation errors name the field and the problem (`tenancy.tenants.0.name: Field required`),
so `tenant-proxy serve` and `check` can print one clear line and exit 2.
Environment overrides (`TENANT_PROXY_<SECTION>__<FIELD>`) exist for paths and secrets, so a
ConfigMap holds the shape and a Secret or the Deployment supplies what must not be in it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


def _regex(value: str | None) -> str | None:
    """A regular expression setting, refused at load time when it does not compile."""
    if value:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


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
        32 * 1024 * 1024, gt=0, description="Largest single watch event the proxy will parse."
    )
    watch_buffer_events: int = Field(
        1000, gt=0, description="Events queued per filtered watch for a client that reads slowly."
    )
    watch_slow_client_seconds: float = Field(
        10.0,
        gt=0,
        description="A filtered watch whose queue stays full this long is cut (ERROR 429).",
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


class SelectorSettings(_Strict):
    """A Kubernetes LabelSelector."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[dict[str, Any]] = Field(default_factory=list)


class ClassRuleSettings(_Strict):
    """Which objects of a class-like resource a tenant sees."""

    names: list[str] = Field(default_factory=list)
    regex: str | None = Field(None, description="Matched against the whole name.")
    selector: SelectorSettings | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return _regex(value)


class GenericRuleSettings(_Strict):
    """A rule for any other cluster-scoped resource."""

    group: str = ""
    resource: str
    names: list[str] = Field(default_factory=list)
    selector: SelectorSettings | None = None
    field_path: str | None = Field(
        None,
        description="A field compared with the tenant's namespaces, e.g. spec.claimRef.namespace.",
    )


class MembersSettings(_Strict):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    serviceaccounts: list[str] = Field(
        default_factory=list, description="'namespace:name' or 'system:serviceaccount:ns:name'."
    )
    all_serviceaccounts_of_own_namespaces: bool = False


class OwnersSettings(_Strict):
    """Who may create and delete the tenant's namespaces through the proxy (namespace
    self-service). Owners are members too."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    serviceaccounts: list[str] = Field(
        default_factory=list, description="'namespace:name' or 'system:serviceaccount:ns:name'."
    )


class TenantSettings(_Strict):
    """One tenant from the config file."""

    name: str = Field(min_length=1)
    members: MembersSettings = Field(default_factory=MembersSettings)
    owners: OwnersSettings = Field(default_factory=OwnersSettings)
    namespace_prefix: str | None = Field(
        None, description="Self-service names must start with this (default '<tenant>-')."
    )
    namespace_regex: str | None = Field(
        None, description="Self-service names must match this whole (instead of the prefix)."
    )
    namespace_quota: int | None = Field(
        None, ge=0, description="Most namespaces the tenant may hold (None: no limit)."
    )
    owner_cluster_role: str = Field(
        "admin", min_length=1, description="ClusterRole the owners get in a namespace they create."
    )
    namespaces: list[str] = Field(default_factory=list, description="Explicit namespaces.")
    node_selector: SelectorSettings | None = None
    storageclasses: ClassRuleSettings | None = None
    ingressclasses: ClassRuleSettings | None = None
    priorityclasses: ClassRuleSettings | None = None
    runtimeclasses: ClassRuleSettings | None = None
    gatewayclasses: ClassRuleSettings | None = None
    volumesnapshotclasses: ClassRuleSettings | None = None
    crd_api_groups: list[str] = Field(default_factory=list)
    resources: list[GenericRuleSettings] = Field(default_factory=list)

    @field_validator("namespace_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return _regex(value)


class TenancySettings(_Strict):
    """Where tenants come from and how namespaces are tied to them."""

    namespace_label: str = "tenant-proxy.io/tenant"
    tenants: list[TenantSettings] = Field(default_factory=list)
    watch_tenant_crds: bool = Field(True, description="Read tenancy.tenant-proxy.io Tenants.")
    capsule: bool = Field(False, description="Read capsule.clastix.io/v1beta2 Tenants too.")
    rolebinding_namespaces: bool = Field(
        False, description="Also show namespaces where a RoleBinding names the caller."
    )
    sync_timeout_seconds: float = Field(
        10.0, gt=0, description="How long a filtered request waits for the first sync (then 503)."
    )
    namespace_creator: str = Field(
        "system:serviceaccount:tenant-proxy:namespace-creator",
        min_length=1,
        description="Who the proxy impersonates to create and delete tenants' namespaces "
        "(deploy/clusterrole-namespace-creator.yaml grants it exactly that); read at start.",
    )


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


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and the problem."""


ENV_PREFIX = "TENANT_PROXY_"
_SECRET_HINTS = ("token", "key", "secret", "password")


def _apply_env(doc: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """`TENANT_PROXY_UPSTREAM__TOKEN_FILE=/x` sets upstream.token_file, `TENANT_PROXY_WORKERS=4`
    sets workers (values are YAML-parsed)."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue  # another tool's variable (TENANT_PROXY_E2E_KUBECONFIG, ...)
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a mapping")
        node[path[-1]] = yaml.safe_load(raw)
    return doc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


def parse_settings(doc: Any, environ: dict[str, str] | None = None) -> Settings:
    """Validate a decoded YAML document (plus environment overrides) into Settings."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("(top level): must be a mapping")
    doc = _apply_env(doc, dict(os.environ if environ is None else environ))
    try:
        return Settings.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def load_settings(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate a config file; relative paths in it are relative to the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    settings: Settings = _absolutise(parse_settings(doc, environ), path.parent.resolve())
    return settings


def _absolutise(model: BaseModel, base: Path) -> Any:
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path):
            # normpath, not resolve: a symlinked path (/var/run) stays as the operator wrote it.
            updates[name] = Path(os.path.normpath(base / value.expanduser()))
        elif isinstance(value, BaseModel):
            updates[name] = _absolutise(value, base)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            updates[name] = [_absolutise(v, base) for v in value]
    return model.model_copy(update=updates) if updates else model


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration with secret-looking values masked, for `check`."""
    dumped: dict[str, Any] = _mask(settings.model_dump(mode="json"))
    return dumped


def _mask(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, key) for v in node]
    is_file = key.endswith("_file") or key.endswith("kubeconfig")
    if node and not is_file and any(h in key.lower() for h in _SECRET_HINTS):
        return "***"
    return node
