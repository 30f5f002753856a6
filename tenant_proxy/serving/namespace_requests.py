"""Execute a CreateNamespace or DeleteNamespace plan: namespace self-service for tenant owners.

The checks are tenancy/self_service.py's (pure); here the I/O around them. The namespace and
its owners' RoleBinding are made as the proxy's namespace-creator identity (impersonated: its
ClusterRole may create and delete namespaces and bind the owner role, nothing else), never as
the proxy itself and never as the caller (who has no such right). The API server's answer is
relayed as it gave it: 201 with the object, 409 AlreadyExists, its own 422s.

Quota: creates of one tenant are serialized here, and a namespace counts from its 201 until the
index has seen it (then the index counts it), so two creates at once cannot both take the last
place in one process. Replicas (and `--workers N`) each keep their own count, so after its 201 a
create of a tenant with a quota is counted again by the API server (a consistent list): one that
finds the tenant over its quota removes its namespace again and is refused. Of creates racing in
several processes, the last to be created always counts all the others, so the quota holds; when
all of them count each other, all are refused (a retry then finds the place free).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson
from aiohttp import web

from tenant_proxy import namespace_protobuf, status
from tenant_proxy.filtering.shape import only_params
from tenant_proxy.headers import impersonation_headers
from tenant_proxy.identity import Identity
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough
from tenant_proxy.tenancy import self_service
from tenant_proxy.tenancy.model import Tenant, TenantView, tenant_namespaces
from tenant_proxy.upstream import Upstream, UpstreamError

audit_log = logging.getLogger("tenant_proxy.audit")
log = logging.getLogger("tenant_proxy.namespaces")

_CREATE_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "pretty")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents", "pretty")
_JSON = ("application/json", "")


class Tenancy(Protocol):
    """What of the tenancy index self-service reads (TenancyIndex has these)."""

    @property
    def generation(self) -> int: ...

    def tenants(self) -> list[Tenant]: ...

    def namespace_owner(self) -> dict[str, str]: ...

    async def wait_change(self, generation: int) -> int: ...


class NamespaceRequests:
    """Creates and deletes tenant owners' namespaces as `creator`."""

    def __init__(
        self,
        upstream: Upstream,
        tenancy: Tenancy,
        creator: Identity,
        tenancy_keys: Sequence[str],
        max_body_bytes: int,
        settle_seconds: float,
    ) -> None:
        self._upstream, self._tenancy, self._creator = upstream, tenancy, creator
        self._keys = tuple(tenancy_keys)
        self._max_body, self._settle = max_body_bytes, settle_seconds
        self._locks: dict[tuple[str, frozenset[str]], asyncio.Lock] = {}
        # Created, not yet seen by the index: counted against the quota meanwhile.
        self._pending: dict[tuple[str, frozenset[str]], set[str]] = {}

    def is_owner(self, identity: Identity) -> bool:
        return bool(self_service.owned_tenants(identity, self._tenancy.tenants()))

    def rights(self, identity: Identity) -> self_service.OwnerRights:
        """The creates and deletes made for `identity`, for its access reviews to say."""
        tenants = self._tenancy.tenants()
        owned = self_service.owned_tenants(identity, tenants)
        if not owned:
            return self_service.OwnerRights()
        return self_service.owner_rights(
            owned, tenants, self._keys, self._tenancy.namespace_owner()
        )

    async def create(
        self, request: web.Request, info: RequestInfo, identity: Identity
    ) -> web.Response:
        audit = Audit(identity.user, "create", dry_run=_dry_run(info))
        try:
            response = await self._create(request, info, identity, audit)
        except status.ApiError as refusal:
            audit.emit(refusal.code, refusal.message)
            raise
        audit.emit(response.status)
        return response

    async def delete(
        self, request: web.Request, info: RequestInfo, identity: Identity, view: TenantView
    ) -> web.Response | None:
        """The answer, or None for a namespace the caller sees but does not own by label (it
        then goes to the API server as the caller, as before)."""
        audit = Audit(identity.user, "delete", info.name, dry_run=_dry_run(info))
        owned = self_service.owned_tenants(identity, self._tenancy.tenants())
        decision = self_service.decide_delete(
            info.name, owned, self._tenancy.namespace_owner(), view.namespaces
        )
        if decision is None:
            return None
        if isinstance(decision, status.ApiError):
            audit.emit(decision.code, decision.message)
            raise decision
        audit.tenant = decision.name
        options = await passthrough.read_body(request, self._max_body)
        query = only_params(info.query.raw, _DELETE_PARAMS)
        # DeleteOptions go on as sent (kubectl's typed client may send them as protobuf).
        body_type = request.headers.get("Content-Type", "application/json")
        code, answer, ctype = await self._call(
            request, "DELETE", info.path, query, options or None, body_type
        )
        audit.emit(code)
        return web.Response(status=code, body=answer, content_type=ctype)

    async def _create(
        self, request: web.Request, info: RequestInfo, identity: Identity, audit: Audit
    ) -> web.Response:
        body = await self._json_body(request)
        audit.name = _name_in(body)
        tenants = self._tenancy.tenants()
        owned = self_service.owned_tenants(identity, tenants)
        assigned = frozenset().union(*(t.namespaces for t in tenants))
        creation = self_service.decide_create(body, owned, self._keys, assigned)
        if isinstance(creation, status.ApiError):
            raise creation
        tenant, name = creation.tenant, creation.name
        audit.tenant = tenant.name
        lock = self._locks.setdefault(tenant.namespace_key, asyncio.Lock())
        async with lock:
            refusal = self_service.over_quota(creation, self._held(tenant))
            if refusal is not None:
                raise refusal
            query = only_params(info.query.raw, _CREATE_PARAMS)
            code, answer, ctype = await self._call(
                request, "POST", "/api/v1/namespaces", query, orjson.dumps(creation.namespace)
            )
            if code == 201 and not audit.dry_run:
                self._pending.setdefault(tenant.namespace_key, set()).add(name)
                await self._count_again(request, creation)
                await self._bind_owners(request, tenant, name)
                await self._until_indexed(name)
        return web.Response(status=code, body=answer, content_type=ctype)

    async def _count_again(self, request: web.Request, creation: self_service.Creation) -> None:
        """After the 201: the tenant's namespaces as the API server counts them, this one
        included; over the quota (another process created one meanwhile), it is removed again
        and the create refused. A count that cannot be had keeps it: this process's own count
        allowed it."""
        tenant = creation.tenant
        if self_service.options_of(tenant).quota is None:
            return
        try:
            held = set(tenant.namespaces)
            for key in self._keys:
                held |= await self._labelled(key, tenant.label_value)
        except (UpstreamError, ValueError) as exc:
            log.warning(
                "namespace %s kept: the tenant's namespaces could not be counted again (%s)",
                creation.name,
                exc,
            )
            return
        refusal = self_service.over_quota(creation, len(held - {creation.name}))
        if refusal is None:
            return
        await self._call(request, "DELETE", f"/api/v1/namespaces/{creation.name}", "", None)
        self._pending.get(tenant.namespace_key, set()).discard(creation.name)
        raise refusal

    async def _labelled(self, key: str, value: str) -> set[str]:
        """The names of the namespaces labelled `key=value`, read as the proxy (a consistent
        list: no resourceVersion)."""
        query = urlencode({"labelSelector": f"{key}={value}"})
        url = self._upstream.url("/api/v1/namespaces", query)
        upstream = await self._upstream.send("GET", url, [("Accept", "application/json")])
        async with upstream:
            answer = await upstream.read()
            if upstream.status != 200:
                raise ValueError(f"{upstream.status} from the API server: {_message(answer)}")
        doc = orjson.loads(answer)
        if not isinstance(doc, dict):
            raise ValueError("the API server's namespace list is not an object")
        return {str(item["metadata"]["name"]) for item in doc.get("items") or []}

    # -- pieces --------------------------------------------------------------------------------
    async def _json_body(self, request: web.Request) -> object:
        """The Namespace sent, as JSON: kubectl's typed client sends protobuf, apply sends JSON."""
        raw = await passthrough.read_body(request, self._max_body)
        if request.content_type == namespace_protobuf.MEDIA_TYPE:
            try:
                return namespace_protobuf.decode_namespace(raw)
            except namespace_protobuf.Unreadable as exc:
                raise _unsupported(f"{namespace_protobuf.MEDIA_TYPE} ({exc})") from None
        if request.content_type not in _JSON:
            raise _unsupported(request.content_type)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise status.bad_request(
                f"couldn't get version/kind; json parse error: {exc}"
            ) from None

    def _held(self, tenant: Tenant) -> int:
        """The tenant's namespaces now: those the index knows, and those created since."""
        own = tenant_namespaces([tenant], self._tenancy.namespace_owner())[tenant.namespace_key]
        pending = self._pending.get(tenant.namespace_key, set())
        pending -= own
        return len(own) + len(pending)

    async def _call(
        self,
        request: web.Request,
        method: str,
        path: str,
        query: str,
        body: bytes | None,
        body_type: str = "application/json",
    ) -> tuple[int, bytes, str]:
        """One request as the namespace creator; the answer read whole (one small object)."""
        headers = [
            ("Accept", "application/json"),
            *[(h, request.headers[h]) for h in ("User-Agent", "Audit-Id") if h in request.headers],
            *impersonation_headers(self._creator),
        ]
        if body is not None:
            headers.append(("Content-Type", body_type))
        upstream = await self._upstream.send(method, self._upstream.url(path, query), headers, body)
        async with upstream:
            answer = await upstream.read()
            return upstream.status, answer, upstream.content_type

    async def _bind_owners(self, request: web.Request, tenant: Tenant, name: str) -> None:
        """Give the owners their role in the new namespace; without it the namespace is of no
        use to them, so a refusal removes it again and says why."""
        binding = orjson.dumps(self_service.owners_rolebinding(tenant, name))
        path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}/rolebindings"
        code, answer, _ = await self._call(request, "POST", path, "", binding)
        if code == 201:
            return
        await self._call(request, "DELETE", f"/api/v1/namespaces/{name}", "", None)
        self._pending.get(tenant.namespace_key, set()).discard(name)
        raise status.internal_error(
            f"the RoleBinding of the owners of namespace {name!r} was refused ({code}: "
            f"{_message(answer)}); the namespace was removed again"
        )

    async def _until_indexed(self, name: str) -> None:
        """Wait (bounded) until the index has the namespace: the caller's next list and its
        open watches then show it. Past the bound it still counts against the quota."""
        generation = self._tenancy.generation
        try:
            async with asyncio.timeout(self._settle):
                while name not in self._tenancy.namespace_owner():
                    generation = await self._tenancy.wait_change(generation)
        except TimeoutError:
            return


def _dry_run(info: RequestInfo) -> bool:
    return bool(only_params(info.query.raw, ("dryRun",)))


def _unsupported(what: str) -> status.ApiError:
    # 415 as the API server words it; here for bodies self-service cannot check.
    return status.ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"application/json, {namespace_protobuf.MEDIA_TYPE} (a v1 Namespace); not {what}",
        {},
    )


def _message(answer: bytes) -> str:
    try:
        doc: Any = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return "no Status"
    return str(doc.get("message", "")) if isinstance(doc, Mapping) else "no Status"


@dataclass
class Audit:
    """The audit line of one self-service write, refused or made: the API server's own audit
    log names only the namespace creator, this one the end user and the tenant."""

    user: str
    verb: str
    name: str = ""
    tenant: str = ""
    dry_run: bool = False

    def emit(self, code: int, refusal: str = "") -> None:
        fields = {**vars(self), "resource": "namespaces", "code": code}
        fields["decision"] = "refused" if refusal else "self-service"
        if refusal:
            fields["reason"] = refusal
        audit_log.info("namespace self-service", extra={"fields": fields})


def _name_in(body: object) -> str:
    meta = body.get("metadata") if isinstance(body, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""
