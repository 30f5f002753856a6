"""The `Emulator`: an in-memory kube-apiserver over HTTPS, for tests and the demo.

One request reads top to bottom in `_handle`: faults -> body limit -> authenticate ->
impersonate -> classify (paths.parse) -> authorize -> route. Every `StatusError` becomes a JSON
`Status`; anything unexpected becomes a 500 `Status` and a log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import ssl
import tempfile
import uuid
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
    negotiation,
    nonresource,
    paths,
    pod_logs,
    portforward,
    protobuf,
    rbac,
    review_protobuf,
    reviews,
    streams,
    tables,
    token_requests,
    upgrades,
    watching,
)
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.faults import Faults
from tenant_proxy.emulator.handlers import Cluster
from tenant_proxy.emulator.listing import ListOptions, list_body, parse_list_options
from tenant_proxy.emulator.objects import parse_json
from tenant_proxy.emulator.resources import BUILTIN, Registry
from tenant_proxy.emulator.store import Store
from tenant_proxy.emulator.types import ANONYMOUS, Attributes, KubeObject, ResourceType, UserInfo

log = logging.getLogger("tenant_proxy.emulator")

MAX_BODY = 3 * 1024 * 1024
ISSUER_URL = "https://kubernetes.default.svc"
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_STREAM_SUBRESOURCES = ("log", "exec", "attach", "portforward")


def json_response(
    body: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type=content_type
    )


def decode_body(request: web.Request, body: bytes) -> Any:
    """A request body as JSON: JSON or YAML, or one of the protobuf kinds kubectl sends."""
    if request.headers.get("Content-Type", "").startswith(protobuf.MEDIA_TYPE):
        try:
            return protobuf.decode(body)
        except protobuf.ProtobufError as exc:
            raise StatusError(415, "UnsupportedMediaType", str(exc), {}) from None
    return parse_json(body)


def status_response(err: StatusError) -> web.Response:
    return json_response(err.status(), err.code, err.headers)


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)


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
        self.bookmark_interval = bookmark_interval
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
        app.on_response_prepare.append(_common_headers)
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
            body = b"" if upgrade else await _read_body(request)
            user = self._authenticate(request)
            user = self._impersonate(user, request)
            attrs = paths.parse(request.method, request.raw_path, request.query)
            if not self._authorize(user, attrs):
                raise errors.forbidden(user, attrs)
            if not attrs.resource_request:
                return self._non_resource(request, attrs)
            response = await self._resource(request, user, attrs, body)
            if self.faults.take_cut(attrs.verb) and isinstance(response, web.Response):
                return await _cut_off(request, response)
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

    # --- resources ------------------------------------------------------------------------------

    async def _resource(
        self, request: web.Request, user: UserInfo, attrs: Attributes, body: bytes
    ) -> web.StreamResponse:
        rt = self.registry.lookup(attrs.api_group, attrs.api_version, attrs.resource)
        if rt is None or (attrs.namespace and not rt.namespaced and rt.plural != "namespaces"):
            raise errors.resource_not_found()
        if (rt.group, rt.plural, attrs.subresource) == ("", "pods", "portforward"):
            pod = self.cluster.get(rt, attrs.namespace, attrs.name)
            return await upgrades.pod_portforward(request, pod, self.echo)
        if request.headers.get("Upgrade", "").lower().startswith("spdy"):
            return await upgrades.portforward_or_spdy(request, attrs)
        if attrs.subresource:
            return await self._subresource(request, user, attrs, rt, body)
        if (rt.group, rt.plural) in reviews.REVIEWS:
            return self._review(request, user, attrs, rt, body)
        if rt.group == metrics.GROUP:
            return self._metrics(request, attrs, rt)
        return await self._verb(request, attrs, rt, body)

    def _metrics(self, request: web.Request, attrs: Attributes, rt: ResourceType) -> web.Response:
        ns, now = attrs.namespace if rt.namespaced else "", dt.datetime.now(dt.UTC)
        if attrs.verb == "get":
            return self._render(request, rt, metrics.get(self.store, rt, ns, attrs.name, now))
        if attrs.verb != "list":
            raise metrics.refuse(rt, attrs)
        fmt = self._format(request, rt, is_list=True, is_watch=False)
        opts = parse_list_options(rt, request.query)
        items = metrics.list_items(self.store, rt, ns, opts, now)
        return self._render_items(request, rt, fmt, items, {})

    def _review(
        self,
        request: web.Request,
        user: UserInfo,
        attrs: Attributes,
        rt: ResourceType,
        body: bytes,
    ) -> web.Response:
        if attrs.verb != "create":
            raise errors.method_not_allowed()
        answer = negotiation.negotiate_review(
            request.headers.get("Accept"), protobuf=rt.kind in review_protobuf.KINDS
        )
        obj = decode_body(request, body)
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be an object")
        handler = reviews.REVIEWS[(rt.group, rt.plural)]
        result = handler(self._review_context(request, user, attrs), obj)
        if answer == "protobuf":
            return web.Response(
                body=review_protobuf.encode(result),
                status=201,
                content_type=review_protobuf.MEDIA_TYPE,
            )
        return json_response(result, 201)

    def _review_context(
        self, request: web.Request, user: UserInfo, attrs: Attributes
    ) -> reviews.ReviewContext:
        return reviews.ReviewContext(
            user,
            self.authenticator,
            self.authorizer,
            self.issuer,
            self.store,
            namespace=attrs.namespace,
            user_agent=request.headers.get("User-Agent", ""),
        )

    async def _subresource(
        self, request: web.Request, user: UserInfo, attrs: Attributes, rt: ResourceType, body: bytes
    ) -> web.StreamResponse:
        sub = attrs.subresource
        if sub not in rt.subresources:
            raise errors.resource_not_found()
        ns = attrs.namespace if rt.namespaced else ""
        if sub in _STREAM_SUBRESOURCES:
            pod = self.cluster.get(rt, ns, attrs.name)
            if sub == "log":
                return await pod_logs.pod_log(request, attrs, pod, self.logs)
            return await streams.exec_or_attach(request, attrs, pod)
        if sub == "token" and attrs.verb == "create":
            doc = decode_body(request, body) if body else {}
            token = token_requests.token_request(
                self._review_context(request, user, attrs), ns, attrs.name, doc
            )
            return json_response(token, 201)
        if sub == "status":
            if attrs.verb == "get":
                return self._render(request, rt, self.cluster.get(rt, ns, attrs.name))
            if attrs.verb == "update":
                return json_response(
                    self.cluster.update(rt, ns, attrs.name, decode_body(request, body), "status")
                )
            if attrs.verb == "patch":
                ctype = request.headers.get("Content-Type", "")
                return json_response(self.cluster.patch(rt, ns, attrs.name, ctype, body, "status"))
        if sub == "scale":
            return self._scale(request, attrs, rt, ns, body)
        raise errors.method_not_allowed()

    def _scale(
        self, request: web.Request, attrs: Attributes, rt: ResourceType, ns: str, body: bytes
    ) -> web.Response:
        if attrs.verb == "get":
            return json_response(self.cluster.get_scale(rt, ns, attrs.name))
        if attrs.verb == "update":
            return json_response(
                self.cluster.update_scale(rt, ns, attrs.name, decode_body(request, body))
            )
        if attrs.verb == "patch":
            ctype = request.headers.get("Content-Type", "")
            return json_response(self.cluster.patch_scale(rt, ns, attrs.name, ctype, body))
        raise errors.method_not_allowed()

    async def _verb(
        self, request: web.Request, attrs: Attributes, rt: ResourceType, body: bytes
    ) -> web.StreamResponse:
        verb, ns, name = attrs.verb, attrs.namespace if rt.namespaced else "", attrs.name
        if verb not in rt.verbs:
            raise errors.method_not_allowed()
        dry_run = bool(request.query.getall("dryRun", []))
        if verb == "get":
            return self._render(request, rt, self.cluster.get(rt, ns, name))
        if verb in ("list", "watch"):
            opts = parse_list_options(rt, request.query)
            if verb == "watch" or opts.watch:
                return await self._watch(request, attrs, rt, opts)
            return self._render_list(request, rt, ns, opts)
        if verb == "create":
            if name:
                raise errors.method_not_allowed()
            return json_response(
                self.cluster.create(rt, ns, decode_body(request, body), dry_run), 201
            )
        if verb == "update":
            return json_response(
                self.cluster.update(rt, ns, name, decode_body(request, body), "", dry_run)
            )
        if verb == "patch":
            ctype = request.headers.get("Content-Type", "")
            return json_response(self.cluster.patch(rt, ns, name, ctype, body, "", dry_run))
        if verb == "delete":
            options = decode_body(request, body) if body.strip() else {}
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            return json_response(self.cluster.delete(rt, ns, name, options, dry_run))
        if verb == "deletecollection":
            opts = parse_list_options(rt, request.query)
            return json_response(self.cluster.delete_collection(rt, ns, opts, dry_run))
        raise errors.method_not_allowed()

    # --- formats --------------------------------------------------------------------------------

    def _format(
        self, request: web.Request, rt: ResourceType, *, is_list: bool, is_watch: bool
    ) -> negotiation.Format:
        return negotiation.negotiate(
            request.headers.get("Accept"), is_list=is_list, is_watch=is_watch, rt=rt
        )

    def _render(self, request: web.Request, rt: ResourceType, obj: KubeObject) -> web.Response:
        fmt = self._format(request, rt, is_list=False, is_watch=False)
        if fmt.kind == "json":
            return json_response(obj)
        if fmt.kind == "table":
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return json_response(self._table(request, rt, [obj], fmt.version, meta, True))
        return json_response(tables.partial_metadata(obj, fmt.version))

    def _render_list(
        self, request: web.Request, rt: ResourceType, ns: str, opts: ListOptions
    ) -> web.Response:
        fmt = self._format(request, rt, is_list=True, is_watch=False)
        items, meta = self.cluster.list_page(rt, ns, opts)
        return self._render_items(request, rt, fmt, items, meta)

    def _render_items(
        self,
        request: web.Request,
        rt: ResourceType,
        fmt: negotiation.Format,
        items: list[KubeObject],
        meta: dict[str, Any],
    ) -> web.Response:
        if fmt.kind == "json":
            return json_response(list_body(rt, items, meta, self.registry.is_custom(rt)))
        if fmt.kind == "table":
            return json_response(self._table(request, rt, items, fmt.version, meta, True))
        return json_response(tables.partial_metadata_list(items, fmt.version, meta))

    def _table(
        self,
        request: web.Request,
        rt: ResourceType,
        objs: list[KubeObject],
        version: str,
        meta: dict[str, Any],
        with_columns: bool,
    ) -> Any:
        return tables.table_for(
            rt,
            objs,
            include_object=request.query.get("includeObject", ""),
            version=version,
            list_meta=meta,
            with_columns=with_columns,
            now=dt.datetime.now(dt.UTC),
            printer_columns=self.registry.printer_columns(rt),
        )

    # --- watch ----------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, attrs: Attributes, rt: ResourceType, opts: ListOptions
    ) -> web.StreamResponse:
        fmt = self._format(request, rt, is_list=True, is_watch=True)

        def table(objs: list[KubeObject], meta: dict[str, Any], columns: bool) -> Any:
            return self._table(request, rt, objs, fmt.version, meta, columns)

        if fmt.kind == "table":
            table([], {}, False)  # a bad includeObject is a 400 before the stream starts
        encoder = watching.EventEncoder(rt, fmt, table)
        return await watching.serve(
            request, self.store, rt, attrs, opts, encoder, self.bookmark_interval
        )


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    # A caller's Audit-Id is kept and echoed, else one is made (apiserver's WithAuditID filter).
    response.headers.setdefault("Audit-Id", request.headers.get("Audit-Id") or str(uuid.uuid4()))
    response.headers.setdefault("Cache-Control", "no-cache, private")


async def _cut_off(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Half of `response`'s body, then the connection dropped."""
    body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
    cut = web.StreamResponse(status=response.status, headers=response.headers)
    cut.headers.pop("Content-Length", None)
    await cut.prepare(request)
    await cut.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return cut
