"""The tenant listener's routes are complete by construction.

Before, the pipeline's filtered-read collaborator was Optional and a `Filter` plan without it
fell through to a pass-through (the cluster's RBAC deciding instead of the tenancy rules). Now
every Plan arm has a required executor: a record missing one cannot be built, and a request
planned `Filter` reaches the filtered executor and nothing else. The dispatch is exercised
over a real listener socket, with executors that record what they were asked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, get_args

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tenant_proxy.auth.chain import AuthChain
from tenant_proxy.config import LimitSettings
from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import NAMESPACES
from tenant_proxy.observability.audit_trail import Auditor
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.plan import Deny, Plan
from tenant_proxy.serving.listeners import pipeline_app
from tenant_proxy.serving.pipeline import Pipeline
from tenant_proxy.serving.routes import ARMS, TenantExecutors, TenantRoutes, UnfilteredRoutes
from tenant_proxy.tenancy.model import Members, Tenant, TenantView, view_for

FIELDS = [f.name for f in fields(TenantExecutors)]


class Recorder:
    """An executor standing in for one arm: answers its name, keeps what it served."""

    def __init__(self, name: str, served: list[str]) -> None:
        self.name, self.served = name, served

    async def _answer(self) -> web.Response:
        self.served.append(self.name)
        return web.Response(text=self.name)

    async def serve(self, *_args: Any) -> Any:
        response = await self._answer()
        return (response, 0) if self.name == "filtered" else response

    def is_owner(self, _identity: Identity) -> bool:
        return False


def executors(served: list[str], **overrides: Any) -> dict[str, Any]:
    return {name: Recorder(name, served) for name in FIELDS} | overrides


def test_every_plan_arm_but_deny_has_an_executor_field() -> None:
    assert set(ARMS) == set(get_args(Plan)) - {Deny}
    assert set(ARMS.values()) == set(FIELDS)


@pytest.mark.parametrize("missing", FIELDS)
def test_a_tenant_listener_without_an_executor_cannot_be_built(missing: str) -> None:
    with pytest.raises(TypeError, match=missing):
        TenantExecutors(**{k: v for k, v in executors([]).items() if k != missing})


@pytest.mark.parametrize("missing", FIELDS)
def test_an_executor_given_as_none_fails_at_construction_naming_its_arm(missing: str) -> None:
    arms = sorted(arm.__name__ for arm, name in ARMS.items() if name == missing)
    with pytest.raises(ValueError, match=", ".join(arms)):
        TenantExecutors(**executors([], **{missing: None}))


@dataclass
class Tenancy:
    """The index as the routes read it: synced, one tenant whose namespaces are filtered."""

    view: TenantView | None
    synced: bool = True

    def view_for(self, _identity: Identity) -> TenantView | None:
        return self.view

    def snapshot(self) -> Tenancy:
        return self  # views are read per snapshot (its `view_for`)

    def owned(self, *_args: Any) -> dict[str, Any]:
        return {}


def anonymous_tenant_view() -> TenantView:
    tenant = Tenant("t1", Members(users=frozenset({"system:anonymous"})), rules={})
    view = view_for(Identity("system:anonymous"), [tenant], {"ns1": "t1"})
    assert view is not None
    assert view.filters(NAMESPACES)
    return view


async def served_by(routes: Any, method: str, path: str) -> str:
    async def same(identity: Identity, _headers: Any) -> Identity:
        return identity

    pipeline = Pipeline(
        auth=AuthChain([], allow_anonymous=True),
        metrics=Metrics(),
        listener="tenant",
        admit=lambda _identity: True,
        delegate=same,
        routes=routes,
        auditor=Auditor(),
    )
    server = TestServer(pipeline_app(pipeline, LimitSettings()))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, server.make_url(path)) as resp:
                assert resp.status == 200
                return await resp.text()
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("method", "path", "arm"),
    [
        ("GET", "/api/v1/namespaces", "filtered"),
        ("GET", "/api/v1/watch/namespaces", "filtered"),
        ("GET", "/api/v1/namespaces/ns1", "filtered"),
        ("GET", "/api/v1/pods", "across"),
        ("GET", "/api/v1/namespaces/ns1/pods", "forward"),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "reviews"),
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "whoami"),
    ],
)
async def test_a_tenants_request_reaches_the_executor_of_its_plan(
    method: str, path: str, arm: str
) -> None:
    served: list[str] = []
    routes = TenantRoutes(
        Tenancy(anonymous_tenant_view()), TenantExecutors(**executors(served)), 1.0
    )
    assert await served_by(routes, method, path) == arm
    assert served == [arm]


@pytest.mark.parametrize(
    ("path", "arm"),
    [
        ("/api/v1/namespaces", "forward"),
        ("/apis/authentication.k8s.io/v1/selfsubjectreviews", "whoami"),
    ],
)
async def test_a_caller_in_no_tenant_and_the_admin_listener_are_not_filtered(
    path: str, arm: str
) -> None:
    method = "POST" if "selfsubjectreviews" in path else "GET"
    served: list[str] = []
    tenant = TenantRoutes(Tenancy(None), TenantExecutors(**executors(served)), 1.0)
    admin = UnfilteredRoutes(Recorder("forward", served), Recorder("whoami", served))
    assert await served_by(tenant, method, path) == arm
    assert await served_by(admin, method, path) == arm
    assert served == [arm, arm]
