"""The proxy's own credentials for kube-apiserver, resolved by kubernetes_asyncio's loaders.

kubernetes_asyncio reads the kubeconfig (`KUBECONFIG` path lists merged, contexts, users, inline
data or files, `exec` plugins, the `oidc` and `gcp` auth providers) or the in-cluster
ServiceAccount. The proxy takes from it only the server, the TLS material and the Authorization
value: it talks through its own aiohttp session (upstream.py) because it streams raw bytes,
which the generated API client cannot. The library runs in a short-lived child process
(upstream_loader.py): imported, it would keep ~64 MiB resident in every serving process.

What the library leaves to its caller is done here:
- `exec` credentials are cached and fetched again (the loader runs the plugin) ahead of their
  expiry, and once when the API server answers 401 (client-go runs the plugin again on a 401 too);
- the in-cluster token file is re-read every minute (as the library's refresh hook does) and on
  a 401, so a rotated projected token is picked up; so is `upstream.token_file` and a user's
  `tokenFile`; these plain files are read here, with no child process;
- the first file of a `KUBECONFIG` list that sets `current-context` names the context, as in
  client-go's `ClientConfigLoadingRules.Load` (kubernetes_asyncio's merger lets the last win);
- a user the proxy cannot authenticate as (no token, certificate or plugin; a plugin that gives
  nothing; an unsupported auth provider) is an error naming the kubeconfig, context and user:
  the proxy never talks to the API server anonymously;
- a loader (or the plugin it runs) that does not finish within `LOADER_TIMEOUT` is killed, with
  its whole process group, and is a `CredentialError` like any other.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import datetime as dt
import functools
import logging
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tenant_proxy.config import UpstreamSettings
from tenant_proxy.startup import StartupError
from tenant_proxy.upstream_loader import answer as loader_answer
from tenant_proxy.upstream_loader_process import (
    LoaderFailure,
    first_current_context,
    kubeconfig_paths,
    one_line,
    run_loader,
    run_loader_sync,
)

__all__ = [
    "CredentialError",
    "UpstreamCredentials",
    "first_current_context",
    "kubeconfig_paths",
    "renewal_time",
]

log = logging.getLogger("tenant_proxy.upstream")

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A credential is renewed a fifth of its lifetime before it expires, at most this long before.
MAX_RENEWAL_LEAD = dt.timedelta(minutes=5)
# Token files (upstream.token_file, a kubeconfig's tokenFile) are re-read this often, as client-go.
TOKEN_FILE_PERIOD = dt.timedelta(minutes=1)
# Auth providers are asked this often whether their token needs refreshing (they decide).
PROVIDER_CHECK_PERIOD = dt.timedelta(minutes=1)
# How long the loader child (and an exec plugin it runs) may take before it is killed.
LOADER_TIMEOUT = 60.0


def _construction_answer(request: Mapping[str, Any], within: float) -> dict[str, Any]:
    """The loader's answer at construction, where no plugin runs (files are only read).

    The child exists to keep kubernetes_asyncio out of this process. Where the library is
    resident already (a process that uses it itself, as the test runner does), the child would
    save nothing and cost a Python start and the library's import (~0.5 s) per construction, so
    the same loader runs here, on a thread of its own (the caller may be inside a running loop).
    Never where a plugin may run: only a child can be killed with what it started.
    """
    if request.get("run_plugins") or "kubernetes_asyncio.client" not in sys.modules:
        return run_loader_sync(request, within)
    with ThreadPoolExecutor(1, thread_name_prefix="upstream-loader") as pool:
        try:
            return pool.submit(asyncio.run, loader_answer(request)).result()
        except Exception as exc:  # as a child that died: one line, never the request
            raise LoaderFailure(f"the credential loader failed: {one_line(exc)}") from None


class CredentialError(StartupError):
    """The proxy's upstream credential cannot be used: one line naming where it comes from."""


def renewal_time(fetched: dt.datetime, expiry: dt.datetime) -> dt.datetime:
    """When to renew a credential fetched at `fetched` that expires at `expiry`."""
    lifetime = max(expiry - fetched, dt.timedelta(0))
    return expiry - min(MAX_RENEWAL_LEAD, lifetime / 5)


@functools.cache
def _private_dir() -> str:
    """Where the TLS material the loader read is written for ssl (it loads files only), each
    file only until it is loaded: one 0700 directory for the process, removed at exit."""
    path = tempfile.mkdtemp(prefix="tenant-proxy-upstream-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def _material_file(data: bytes | Path | None) -> Iterator[str | None]:
    """`data` in a 0600 file of the private directory while ssl loads it, then gone (a file
    the settings name is loaded where it is)."""
    if data is None or isinstance(data, Path):
        yield None if data is None else str(data)
        return
    fd, name = tempfile.mkstemp(dir=_private_dir())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield name
    finally:
        with suppress(FileNotFoundError):
            os.unlink(name)


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


class _Tls:
    """TLS material as the loader (or the settings) gave it: contents, not paths."""

    def __init__(self, loaded: Mapping[str, Any]) -> None:
        def contents(key: str) -> bytes | None:
            value = loaded.get(key)
            return base64.b64decode(value) if value else None

        self.ca: bytes | Path | None = contents("ca")
        self.cert: bytes | Path | None = contents("cert")
        self.key: bytes | Path | None = contents("key")
        self.verify = bool(loaded.get("verify_ssl", True))
        self.server_name: str | None = loaded.get("tls_server_name")
        self.proxy: str | None = loaded.get("proxy")


class UpstreamCredentials:
    """Server, TLS context and Authorization of the proxy's own identity.

    The server is known at construction (a kubeconfig is read by the loader child then, and a
    static credential loaded with it); `load` (awaited by `Upstream.start`, or by the first
    request) reads the rest and runs an exec plugin, raising `CredentialError`.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        environ: Mapping[str, str] | None = None,
        service_account_dir: Path = IN_CLUSTER_DIR,
        loader_timeout: float = LOADER_TIMEOUT,
    ) -> None:
        self._settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._sa_dir = service_account_dir
        self._timeout = loader_timeout
        self._request: dict[str, Any] | None = None  # what the loader child is asked
        self._resolved: dict[str, Any] = {}  # its answer at construction
        self._kind = "static"  # or "exec", "provider": what renewal runs the loader for
        self._authorization: str | None = None  # from the loader; a token file overrides it
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
            self._request = {"in_cluster": {"dir": str(self._sa_dir), "host": host, "port": port}}
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
        existing = [p for p in paths if os.path.exists(p)]
        if not existing:
            raise CredentialError(f"{field}: {os.pathsep.join(paths)}: no such file")
        self._request = {
            "kubeconfigs": existing,
            "field": field,
            "context": self._settings.context,
            "run_plugins": False,
        }
        try:
            answer = _construction_answer(self._request, self._timeout)
        except LoaderFailure as exc:
            raise CredentialError(f"{field}: {os.pathsep.join(existing)}: {exc}") from None
        if "fatal" in answer:
            raise CredentialError(str(answer["fatal"]))
        self._resolved = answer
        self._kind = str(answer["kind"])
        self._request["run_plugins"] = True
        if answer.get("token_file") and not self._token_file:
            self._token_file = _TokenFile(Path(answer["token_file"]))
        return str(answer["where"]), str(answer["server"])

    # -- loading ------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read every credential once (idempotent); `CredentialError` if it cannot be used."""
        async with self._lock:
            if self.ssl_context is not None:
                return
            try:
                tls = await self._load()
                self.ssl_context = self._tls(tls)
                if not await self._header() and not tls.cert:
                    raise CredentialError(
                        "no token, client certificate or exec plugin credential: "
                        "the proxy never calls the API server anonymously"
                    )
            except (CredentialError, LoaderFailure) as exc:
                raise CredentialError(f"{self.where}: {exc}") from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CredentialError(f"{self.where}: {one_line(exc)}") from None
            except ssl.SSLError as exc:
                raise CredentialError(f"{self.where}: TLS material: {one_line(exc)}") from None

    async def _load(self) -> _Tls:
        if self._request is None:
            tls = self._server_settings()
        else:
            # Construction's answer serves once (the key and token it holds are kept no longer
            # than needed, and a load tried again after a failure reads everything again).
            answer, self._resolved = self._resolved, {}
            if "loaded" not in answer and "error" not in answer:
                answer = await run_loader(self._request, self._timeout)  # an exec plugin runs
            if "fatal" in answer or "error" in answer:
                raise CredentialError(str(answer.get("fatal") or answer.get("error")))
            loaded = answer["loaded"]
            self._authorization = loaded.get("authorization")
            if self._kind == "exec" and loaded.get("expiry"):
                self._renew_at = renewal_time(_now(), dt.datetime.fromisoformat(loaded["expiry"]))
            elif self._kind == "provider":
                self._request["provider_config"] = loaded.get("provider_config")
                self._renew_at = _now() + PROVIDER_CHECK_PERIOD
            if self._settings.in_cluster and self._token_file is None:
                # The library re-reads it every minute (its refresh hook): so does the proxy.
                self._token_file = _TokenFile(self._sa_dir / "token")
            tls = _Tls(loaded)
        if self._token_file is not None:
            self._token_file.read()
        return tls

    def _server_settings(self) -> _Tls:
        settings, tls = self._settings, _Tls({})
        for name, attr in (
            ("ca_file", "ca"),
            ("client_cert_file", "cert"),
            ("client_key_file", "key"),
        ):
            path = getattr(settings, name)
            if path is not None:
                if not path.is_file():
                    raise CredentialError(f"upstream.{name}: {path}: no such file")
                setattr(tls, attr, path)
        return tls

    def _tls(self, tls: _Tls) -> ssl.SSLContext:
        if tls.proxy:
            raise CredentialError("proxy-url is not supported")
        with _material_file(tls.ca) as ca:
            ctx = ssl.create_default_context(cafile=ca)
        if not tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert:
            if not tls.key:
                raise CredentialError("a client certificate without its key")
            with _material_file(tls.cert) as cert, _material_file(tls.key) as key:
                ctx.load_cert_chain(str(cert), key)
        self.server_hostname = tls.server_name or None
        return ctx

    # -- the Authorization value ----------------------------------------------------------------
    async def _header(self) -> str | None:
        if self._token_file is not None:
            return self._token_file.header()
        value = self._authorization
        return (value.strip() or None) if value else None

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
            elif self._kind != "static" and self._request is not None:
                await self._run_loader_again()
            else:
                return
            if await self._header() != before:
                log.info("upstream credential renewed (%s)", why, extra={"fields": {"why": why}})
        except (CredentialError, LoaderFailure, OSError, ValueError, KeyError) as exc:
            # Keep the current credential: it may still work, and the next call tries again.
            log.error("renewing the upstream credential failed: %s: %s", self.where, one_line(exc))
            self._renew_at = _now() + dt.timedelta(seconds=5)

    async def _run_loader_again(self) -> None:
        assert self._request is not None
        answer = await run_loader(self._request, self._timeout)
        if "fatal" in answer or "error" in answer:
            raise CredentialError(str(answer.get("fatal") or answer.get("error")))
        loaded = answer["loaded"]
        token = loaded.get("authorization")
        if self._kind == "provider":
            self._request["provider_config"] = loaded.get("provider_config")
            self._renew_at = _now() + PROVIDER_CHECK_PERIOD
        elif not token:
            # A certificate cannot be swapped under live connections: it stays as first loaded.
            raise CredentialError("the exec plugin gave no token on renewal")
        else:
            expiry = loaded.get("expiry")
            when = dt.datetime.fromisoformat(expiry) if expiry else None
            self._renew_at = renewal_time(_now(), when) if when else None
        if token:
            self._authorization = token
