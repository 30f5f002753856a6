"""The `Emulator`: an in-memory kube-apiserver over HTTPS, for tests and the demo.

One request reads top to bottom in `_handle`: faults -> body limit -> authenticate ->
impersonate -> classify (paths.parse) -> authorize -> route. Every `StatusError` becomes a JSON
`Status`; anything unexpected becomes a 500 `Status` and a log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tenant_proxy import kubeconfig, pki, pki_verify
from tenant_proxy.emulator import (
    bootstrap_policy,
    errors,
    identity,
    impersonation,
    metrics,
    nonresource,
    paths,
    pod_logs,
    portforward,
    rbac,
)
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.faults import Faults
from tenant_proxy.emulator.handlers import Cluster
from tenant_proxy.emulator.resources import BUILTIN, Registry
from tenant_proxy.emulator.responses import (
    MAX_BODY,
    common_headers,
    cut_off,
    json_response,
    read_body,
    status_response,
)
from tenant_proxy.emulator.routes import Routes
from tenant_proxy.emulator.store import Store
from tenant_proxy.emulator.types import ANONYMOUS, Attributes, KubeObject, ResourceType, UserInfo

log = logging.getLogger("tenant_proxy.emulator")

ISSUER_URL = "https://kubernetes.default.svc"
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def _server_ssl(cert: pki.KeyPair) -> ssl.SSLContext:
    # As kube-apiserver: any client certificate completes the handshake, the authenticator
    # judges it (a foreign one is a 401 Status, not a reset connection).
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write(cert_path, key_path)
        ctx = pki_verify.server_context(cert_path, key_path)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@dataclass(frozen=True)
class Received:
    """What a test may want to know of a request the emulator received (no credentials)."""

    method: str
    path: str
    content_type: str
    accept: str


class Emulator:
    """An in-memory kube-apiserver: start it, point kubeconfigs at it, inject faults."""

    def __init__(
        self,
        seed_objects: Iterable[KubeObject] = (),
        static_tokens: dict[str, UserInfo] | None = None,
        host: str = "127.0.0.1",
        *,
        bookmark_interval: float = 1.0,
        history_window: int = 1000,
        watch_queue: int = 1000,
        ca: pki.KeyPair | None = None,
        metrics_server: bool = False,
    ) -> None:
        self.host = host
        self._ca = ca or pki.new_ca("emulator-ca")
        self._server_cert = pki.issue_server_cert(self._ca, [host, "localhost", "127.0.0.1"])
        # metrics_server: serve metrics.k8s.io as a cluster with metrics-server installed does.
        self.registry = Registry(BUILTIN + metrics.RESOURCE_TYPES if metrics_server else BUILTIN)
        self.store = Store(history_window=history_window, watch_queue=watch_queue)
        self.cluster = Cluster(self.store, self.registry)
        self.faults = Faults()
        # The latest requests, for tests that check what a client or the proxy really sent.
        self.received: collections.deque[Received] = collections.deque(maxlen=1000)
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._ssl = _server_ssl(self._server_cert)
        self.issuer = identity.TokenIssuer(ISSUER_URL)
        self.authenticator = identity.Authenticator(
            self._ca.cert_pem, static_tokens or {}, self.issuer, self._sa_exists
        )
        self.authorizer = rbac.Authorizer(self.store)
        self.logs = pod_logs.LogBook()
        self.echo = portforward.EchoServer()  # what port-forward reaches in every pod
        self.cluster.on_removed.append(self._pod_gone)
        self.routes = Routes(
            registry=self.registry,
            store=self.store,
            cluster=self.cluster,
            authenticator=self.authenticator,
            authorizer=self.authorizer,
            issuer=self.issuer,
            logs=self.logs,
            echo=self.echo,
            bookmark_interval=bookmark_interval,
        )
        self._bootstrap(list(seed_objects))

    # --- state ----------------------------------------------------------------------------------

    def _pod_gone(self, rt: ResourceType, obj: KubeObject) -> None:
        # Followers of a deleted pod's log see their stream end, as with a real kubelet.
        if (rt.group, rt.plural) == ("", "pods"):
            meta = obj["metadata"]
            self.logs.close(meta.get("namespace", ""), meta["name"])

    def append_log(self, namespace: str, pod: str, line: str) -> None:
        """Add a line to a pod's log (what `kubectl logs [-f]` shows)."""
        self.logs.append_log(namespace, pod, line)

    def _sa_exists(self, namespace: str, name: str) -> bool:
        return self.store.get_object("", "serviceaccounts", namespace, name) is not None

    def _bootstrap(self, seed: list[KubeObject]) -> None:
        ns = self.registry.lookup("", "v1", "namespaces")
        assert ns is not None
        for name in SYSTEM_NAMESPACES:
            self.cluster.create(ns, "", {"metadata": {"name": name}})
        for obj in bootstrap_policy.bootstrap_objects():
            self.cluster.apply(obj)
        if self.registry.lookup(metrics.GROUP, metrics.VERSION, "nodes") is not None:
            for obj in metrics.install_objects():
                self.cluster.apply(obj)
        for obj in seed:
            self.cluster.apply(obj)
        # History starts at the seeded world: older resourceVersions are "compacted" (410).
        self.store.compact()

    @property
    def ca(self) -> pki.KeyPair:
        return self._ca

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self._port}"

    # --- lifecycle ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY + 1)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(common_headers)
        return app

    async def start(self, port: int = 0) -> None:
        await self.echo.start()
        runner = web.AppRunner(
            self._app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, ssl_context=self._ssl, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._runner = runner

    async def stop(self) -> None:
        self.store.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.echo.stop()

    async def restart(self) -> None:
        """A new listener on the same port; state is kept, open watches are cut."""
        port = self._port
        await self.stop()
        await self.start(port)

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- credentials ----------------------------------------------------------------------------

    def mint_user(self, user: str, groups: Iterable[str] = ()) -> pki.KeyPair:
        return pki.issue_client_cert(self._ca, user, tuple(groups))

    def kubeconfig(self, user: str, groups: Iterable[str] = ()) -> dict[str, Any]:
        pair = self.mint_user(user, groups)
        return kubeconfig.build_kubeconfig(
            self.url,
            self.ca_pem,
            name="emulator",
            user=user,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
        )

    def token_kubeconfig(self, token: str, user: str = "token-user") -> dict[str, Any]:
        return kubeconfig.build_kubeconfig(
            self.url, self.ca_pem, name="emulator", user=user, token=token
        )

    def write_kubeconfig(self, path: Path, user: str, groups: Iterable[str] = ()) -> Path:
        return kubeconfig.write_kubeconfig(path, self.kubeconfig(user, groups))

    def admin_kubeconfig(self) -> dict[str, Any]:
        return self.kubeconfig("admin", ("system:masters",))

    # --- in-process admin helpers ---------------------------------------------------------------

    async def apply(self, obj: KubeObject) -> KubeObject:
        return self.cluster.apply(obj)

    async def create(self, obj: KubeObject) -> KubeObject:
        rt = self._type_of(obj)
        ns = str((obj.get("metadata") or {}).get("namespace") or "")
        return self.cluster.create(rt, ns, obj)

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str = ""
    ) -> KubeObject:
        return self.cluster.delete(
            self._type_of({"apiVersion": api_version, "kind": kind}), namespace, name
        )

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        body: Any,
        namespace: str = "",
        content_type: str = "application/merge-patch+json",
    ) -> KubeObject:
        rt = self._type_of({"apiVersion": api_version, "kind": kind})
        return self.cluster.patch(rt, namespace, name, content_type, orjson.dumps(body))

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> KubeObject | None:
        rt = self._type_of({"apiVersion": api_version, "kind": kind})
        return self.store.get_object(rt.group, rt.plural, namespace if rt.namespaced else "", name)

    def _type_of(self, obj: Mapping[str, Any]) -> ResourceType:
        rt = self.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if rt is None:
            raise errors.resource_not_found()
        return rt

    # --- fault injection ------------------------------------------------------------------------

    def fail_next(self, n: int, status: int, retry_after: int | None = None) -> None:
        self.faults.remaining, self.faults.status, self.faults.retry_after = n, status, retry_after

    def set_latency(self, seconds: float) -> None:
        self.faults.latency = seconds

    def cut_next_lists(self, n: int, after: int = 0) -> None:
        """After `after` whole list answers, the next `n` stop halfway and their connection
        drops (a server or network failure mid-body)."""
        self.faults.cut_lists, self.faults.cut_after = n, after

    def cut_watches(self) -> int:
        return self.store.cut_watches()

    def compact(self) -> None:
        self.store.compact()

    # --- the request pipeline -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(
                request.method,
                request.raw_path,
                request.headers.get("Content-Type", ""),
                request.headers.get("Accept", ""),
            )
        )
        try:
            if self.faults.latency:
                await asyncio.sleep(self.faults.latency)
            failure = self.faults.next_failure()
            if failure is not None:
                raise failure
            upgrade = "upgrade" in request.headers.get("Connection", "").lower()
            body = b"" if upgrade else await read_body(request)
            user = self._authenticate(request)
            user = self._impersonate(user, request)
            attrs = paths.parse(request.method, request.raw_path, request.query)
            if not self._authorize(user, attrs):
                raise errors.forbidden(user, attrs)
            if not attrs.resource_request:
                return self._non_resource(request, attrs)
            response = await self.routes.resource(request, user, attrs, body)
            if self.faults.take_cut(attrs.verb) and isinstance(response, web.Response):
                return await cut_off(request, response)
            return response
        except StatusError as err:
            response = status_response(err)
            if err.code == 413:
                response.force_close()  # the rest of the body is not worth reading
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("emulator: unexpected error on %s %s", request.method, request.path)
            return status_response(errors.internal_error("an unexpected error occurred"))

    def _authenticate(self, request: web.Request) -> UserInfo:
        return self.authenticator.authenticate(request) or ANONYMOUS

    def _impersonate(self, user: UserInfo, request: web.Request) -> UserInfo:
        return impersonation.apply(user, request.headers, self.authorizer)

    def _authorize(self, user: UserInfo, attrs: Attributes) -> bool:
        return self.authorizer.authorize(user, attrs)

    # --- non-resource paths ---------------------------------------------------------------------

    def _non_resource(self, request: web.Request, attrs: Attributes) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        path = attrs.path.rstrip("/") or "/"
        parts = paths.split_path(path)
        if parts and parts[0] in ("healthz", "livez", "readyz"):
            return nonresource.health(parts, request.query)
        doc = nonresource.document(
            parts, self.registry, self.issuer, f"{self.host}:{self._port}", self.url
        )
        if doc is None:
            raise errors.resource_not_found()
        if parts and parts[0] in ("openid", ".well-known"):
            ctype = "application/jwk-set+json" if parts[0] == "openid" else "application/json"
            return json_response(
                doc, headers={"Cache-Control": "public, max-age=3600"}, content_type=ctype
            )
        return json_response(doc)
