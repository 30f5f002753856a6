"""The proxy's own credentials for kube-apiserver, resolved by kubernetes_asyncio's loaders.

kubernetes_asyncio reads the kubeconfig (`KUBECONFIG` path lists merged, contexts, users, inline
data or files, `exec` plugins, the `oidc` and `gcp` auth providers) or the in-cluster
ServiceAccount into a `Configuration`. The proxy takes from it only the server, the TLS material
and the Authorization value: it talks through its own aiohttp session (upstream.py) because it
streams raw bytes, which the generated API client cannot.

What the library leaves to its caller is done here:
- `exec` credentials are cached and run again (`ExecProvider`) ahead of their expiry, and once
  when the API server answers 401 (client-go runs the plugin again on a 401 too);
- the in-cluster token file is re-read every minute (the library's refresh hook) and on a 401,
  so a rotated projected token is picked up; so is `upstream.token_file`;
- the first file of a `KUBECONFIG` list that sets `current-context` names the context, as in
  client-go's `ClientConfigLoadingRules.Load` (kubernetes_asyncio's merger lets the last win);
- a user the proxy cannot authenticate as (no token, certificate or plugin; a plugin that gives
  nothing; an unsupported auth provider) is an error naming the kubeconfig, context and user:
  the proxy never talks to the API server anonymously.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import functools
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.dateutil import parse_rfc3339
from kubernetes_asyncio.config.exec_provider import ExecProvider
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from kubernetes_asyncio.config.kube_config import (
    ENV_KUBECONFIG_PATH_SEPARATOR,
    KubeConfigLoader,
    KubeConfigMerger,
)

from tenant_proxy.config import UpstreamSettings
from tenant_proxy.startup import StartupError

log = logging.getLogger("tenant_proxy.upstream")

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Auth providers kubernetes_asyncio implements; others (azure, ...) would leave the user anonymous.
SUPPORTED_AUTH_PROVIDERS = frozenset({"oidc", "gcp"})
# A credential is renewed a fifth of its lifetime before it expires, at most this long before.
MAX_RENEWAL_LEAD = dt.timedelta(minutes=5)
# Token files (upstream.token_file, a kubeconfig's tokenFile) are re-read this often, as client-go.
TOKEN_FILE_PERIOD = dt.timedelta(minutes=1)
# Auth providers are asked this often whether their token needs refreshing (they decide).
PROVIDER_CHECK_PERIOD = dt.timedelta(minutes=1)
BEARER = "BearerToken"


class CredentialError(StartupError):
    """The proxy's upstream credential cannot be used: one line naming where it comes from."""


def renewal_time(fetched: dt.datetime, expiry: dt.datetime) -> dt.datetime:
    """When to renew a credential fetched at `fetched` that expires at `expiry`."""
    lifetime = max(expiry - fetched, dt.timedelta(0))
    return expiry - min(MAX_RENEWAL_LEAD, lifetime / 5)


def kubeconfig_paths(explicit: Path | None, environ: Mapping[str, str]) -> list[str]:
    """The kubeconfig files to merge: the configured one, else `$KUBECONFIG`'s list."""
    if explicit is not None:
        return [str(explicit)]
    listed = environ.get("KUBECONFIG", "").split(ENV_KUBECONFIG_PATH_SEPARATOR)
    return list(dict.fromkeys(os.path.expanduser(p) for p in listed if p))


def first_current_context(paths: list[str], files: Mapping[str, Any]) -> str | None:
    """client-go's rule: the first file that sets current-context decides."""
    for path in paths:
        doc = files.get(path)
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.removeprefix("Invalid kube-config file. ")


@functools.cache
def _private_dir() -> str:
    """Where the loader writes inline certificates and keys (ssl loads files only): one 0700
    directory for the process, removed at exit (the loader reuses its files across loads)."""
    path = tempfile.mkdtemp(prefix="tenant-proxy-upstream-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _TokenFile:
    """A bearer token re-read from its file, so a rotated token is used within a minute."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._value = ""
        self._read_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    def read(self) -> str:
        self._value = self.path.read_text().strip()
        self._read_at = _now()
        if not self._value:
            raise CredentialError(f"{self.path}: the token file is empty")
        return self._value

    def header(self) -> str:
        if _now() - self._read_at >= TOKEN_FILE_PERIOD:
            try:
                self.read()
            except (OSError, CredentialError) as exc:
                log.warning("keeping the previous upstream token: %s", one_line(exc))
        return f"Bearer {self._value}"


class UpstreamCredentials:
    """Server, TLS context and Authorization of the proxy's own identity.

    The server is known at construction; `load` (awaited by `Upstream.start`, or by the first
    request) reads the rest and runs an exec plugin, raising `CredentialError`.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        environ: Mapping[str, str] | None = None,
        service_account_dir: Path = IN_CLUSTER_DIR,
    ) -> None:
        self._settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._sa_dir = service_account_dir
        self._configuration = Configuration()
        self._loader: KubeConfigLoader | None = None
        self._user: Any = None  # the kubeconfig user's ConfigNode
        self._token_file = _TokenFile(settings.token_file) if settings.token_file else None
        self._renew_at: dt.datetime | None = None
        self._lock = asyncio.Lock()
        self.ssl_context: ssl.SSLContext | None = None
        self.server_hostname: str | None = None
        self.where, self.server = self._resolve()

    # -- which identity -----------------------------------------------------------------------
    def _resolve(self) -> tuple[str, str]:
        settings = self._settings
        if settings.in_cluster:
            host = self._environ.get("KUBERNETES_SERVICE_HOST")
            port = self._environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise CredentialError("upstream.in_cluster: KUBERNETES_SERVICE_HOST is not set")
            host = f"[{host}]" if ":" in host else host
            return f"in-cluster ServiceAccount ({self._sa_dir})", f"https://{host}:{port}"
        paths = kubeconfig_paths(settings.kubeconfig, self._environ)
        if paths and (settings.kubeconfig is not None or not settings.server):
            return self._resolve_kubeconfig(paths)
        if settings.server:
            return f"upstream.server {settings.server}", settings.server.rstrip("/")
        raise CredentialError(
            "upstream: set kubeconfig, in_cluster or server (KUBECONFIG is not set either)"
        )

    def _resolve_kubeconfig(self, paths: list[str]) -> tuple[str, str]:
        field = "upstream.kubeconfig" if self._settings.kubeconfig else "KUBECONFIG"
        named = ENV_KUBECONFIG_PATH_SEPARATOR.join(paths)
        existing = [p for p in paths if os.path.exists(p)]
        if not existing:
            raise CredentialError(f"{field}: {named}: no such file")
        try:
            merger = KubeConfigMerger(ENV_KUBECONFIG_PATH_SEPARATOR.join(existing))
        except (OSError, yaml.YAMLError, TypeError, AttributeError, KeyError) as exc:
            raise CredentialError(f"{field}: {named}: not a kubeconfig: {one_line(exc)}") from None
        context = self._settings.context or first_current_context(existing, merger.config_files)
        if not context:
            raise CredentialError(
                f"{field}: {named}: no current-context, and upstream.context is not set"
            )
        where = f"kubeconfig {named}, context {context!r}"
        config: Any = merger.config
        try:
            self._loader = KubeConfigLoader(
                config_dict=config,
                active_context=context,
                config_base_path=None,
                temp_file_path=_private_dir(),
            )
            ctx: Any = (self._loader.current_context or {})["context"]
            user_name = ctx.get("user")
            where += f", user {user_name!r}"
            cluster = config["clusters"].get_with_name(ctx["cluster"])["cluster"]
            server = str(cluster["server"]).rstrip("/")
            user = config["users"].get_with_name(user_name, safe=True)
            if user is None:
                raise CredentialError(f"{where}: the kubeconfig has no such user")
            self._user = user["user"]
        except (ConfigException, AssertionError, KeyError, TypeError) as exc:
            raise CredentialError(f"{where}: {one_line(exc)}") from None
        return where, server

    # -- loading ------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read every credential once (idempotent); `CredentialError` if it cannot be used."""
        async with self._lock:
            if self.ssl_context is not None:
                return
            try:
                await self._load()
                self.ssl_context = self._tls()
                if not await self._header() and not self._configuration.cert_file:
                    raise CredentialError(
                        "no token, client certificate or exec plugin credential: "
                        "the proxy never calls the API server anonymously"
                    )
            except CredentialError as exc:
                raise CredentialError(f"{self.where}: {exc}") from None
            except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
                raise CredentialError(f"{self.where}: {one_line(exc)}") from None
            except ssl.SSLError as exc:
                raise CredentialError(f"{self.where}: TLS material: {one_line(exc)}") from None

    async def _load(self) -> None:
        cfg = self._configuration
        if self._settings.in_cluster:
            InClusterConfigLoader(
                token_filename=str(self._sa_dir / "token"),
                cert_filename=str(self._sa_dir / "ca.crt"),
                environ=self._environ,
            ).load_and_set(cfg)
        elif self._loader is not None:
            self._check_user()
            await self._loader.load_and_set(cfg)
            expiry = getattr(self._loader, "exec_plugin_expiry", None)
            if "exec" in self._user and expiry is not None:
                self._renew_at = renewal_time(_now(), parse_rfc3339(expiry))
            if self._loader.provider in SUPPORTED_AUTH_PROVIDERS:
                self._renew_at = _now() + PROVIDER_CHECK_PERIOD
            if "tokenFile" in self._user and not self._token_file and "exec" not in self._user:
                # The loader reads it once; client-go re-reads it: so does the proxy. Relative
                # to the kubeconfig that names it, as the loader and client-go read it.
                named = Path(os.path.dirname(self._user.path or "")) / self._user["tokenFile"]
                self._token_file = _TokenFile(named)
        else:
            self._load_server_settings(cfg)
        if self._token_file is not None:
            self._token_file.read()

    def _check_user(self) -> None:
        user = self._user
        provider = user.safe_get("auth-provider")
        if provider is not None:
            name = provider.get("name") if isinstance(provider, dict) else None
            if name not in SUPPORTED_AUTH_PROVIDERS:
                raise CredentialError(
                    f"auth-provider {name!r} is not supported (use an exec plugin instead)"
                )
        if user.safe_get("exec") is not None:
            ExecProvider(user["exec"])  # validates command and apiVersion now, not at first use

    def _load_server_settings(self, cfg: Any) -> None:
        settings = self._settings
        cfg.host = self.server
        for name, attr in (
            ("ca_file", "ssl_ca_cert"),
            ("client_cert_file", "cert_file"),
            ("client_key_file", "key_file"),
        ):
            path = getattr(settings, name)
            if path is not None:
                if not path.is_file():
                    raise CredentialError(f"upstream.{name}: {path}: no such file")
                setattr(cfg, attr, str(path))

    def _tls(self) -> ssl.SSLContext:
        cfg = self._configuration
        if cfg.proxy:
            raise CredentialError("proxy-url is not supported")
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if not cfg.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.cert_file:
            if not cfg.key_file:
                raise CredentialError("a client certificate without its key")
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        self.server_hostname = cfg.tls_server_name or None
        return ctx

    # -- the Authorization value ----------------------------------------------------------------
    async def _header(self) -> str | None:
        if self._token_file is not None:
            return self._token_file.header()
        # Runs the in-cluster loader's hook, which re-reads a rotated token file.
        value = await self._configuration.get_api_key_with_prefix(BEARER)
        return (str(value).strip() or None) if value else None

    async def authorization(self) -> str | None:
        """The Authorization header value, renewed ahead of the credential's expiry."""
        if self.ssl_context is None:
            await self.load()
        if self._renew_at is not None and _now() >= self._renew_at:
            async with self._lock:
                if self._renew_at is not None and _now() >= self._renew_at:
                    await self._renew("expiry")
        return await self._header()

    async def renew(self, rejected: str | None) -> bool:
        """After a 401 for `rejected`: fetch a new credential (once, however many requests
        were refused with it). Whether the Authorization value changed."""
        async with self._lock:
            if await self._header() == rejected:
                await self._renew("401 from the API server")
        return await self._header() != rejected

    async def _renew(self, why: str) -> None:
        before = await self._header()
        try:
            if self._token_file is not None:
                self._token_file.read()
            elif self._settings.in_cluster:
                await self._load()
            elif self._user is not None and self._user.safe_get("exec") is not None:
                await self._run_exec()
            elif self._loader is not None and self._loader.provider is not None:
                await self._loader.load_and_set(self._configuration)
                self._renew_at = _now() + PROVIDER_CHECK_PERIOD
            else:
                return
            if await self._header() != before:
                log.info("upstream credential renewed (%s)", why, extra={"fields": {"why": why}})
        except (ConfigException, CredentialError, OSError, ValueError, KeyError) as exc:
            # Keep the current credential: it may still work, and the next call tries again.
            log.error("renewing the upstream credential failed: %s: %s", self.where, one_line(exc))
            self._renew_at = _now() + dt.timedelta(seconds=5)

    async def _run_exec(self) -> None:
        status = await ExecProvider(self._user["exec"]).run()
        token = status.get("token") if isinstance(status, dict) else None
        if not token:
            # A certificate cannot be swapped under live connections: it stays as first loaded.
            raise CredentialError("the exec plugin gave no token on renewal")
        self._configuration.api_key[BEARER] = f"Bearer {token}"
        expiry = status.get("expirationTimestamp")
        self._renew_at = renewal_time(_now(), parse_rfc3339(expiry)) if expiry else None
