"""Resource requests, once authenticated, impersonated and authorized: the verbs, the
subresources (status, scale, token, pod streams), the reviews and metrics.k8s.io, each answer in
the format the request negotiated (JSON, Table, PartialObjectMetadata, a watch stream)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from tenant_proxy.emulator import (
    errors,
    identity,
    metrics,
    negotiation,
    pod_logs,
    portforward,
    rbac,
    review_protobuf,
    reviews,
    streams,
    tables,
    token_requests,
    upgrades,
    watching,
)
from tenant_proxy.emulator.handlers import Cluster
from tenant_proxy.emulator.listing import ListOptions, list_body, parse_list_options
from tenant_proxy.emulator.resources import Registry
from tenant_proxy.emulator.responses import decode_body, json_response
from tenant_proxy.emulator.store import Store
from tenant_proxy.emulator.types import Attributes, KubeObject, ResourceType, UserInfo

_STREAM_SUBRESOURCES = ("log", "exec", "attach", "portforward")


class Routes:
    """Answers resource requests from the emulator's parts."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        cluster: Cluster,
        authenticator: identity.Authenticator,
        authorizer: rbac.Authorizer,
        issuer: identity.TokenIssuer,
        logs: pod_logs.LogBook,
        echo: portforward.EchoServer,
        bookmark_interval: float,
    ) -> None:
        self.registry, self.store, self.cluster = registry, store, cluster
        self.authenticator, self.authorizer, self.issuer = authenticator, authorizer, issuer
        self.logs, self.echo = logs, echo
        self.bookmark_interval = bookmark_interval

    async def resource(
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

    # --- formats ---

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

    # --- watch ---

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
