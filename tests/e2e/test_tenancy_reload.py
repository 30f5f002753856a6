"""Tenancy changes that the index must follow without a restart.

A config reload that gives a resource a rule reading a new field re-reads that resource before
the change is published: the tenant then sees exactly the objects holding its namespaces there,
in a list and on a watch opened before the reload. With `tenancy.rolebinding_namespaces`,
RoleBindings that change what nobody sees wake no watch, bursts of them wake watches a bounded
number of times, and one naming a caller reaches that caller's open watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster
from e2e_kubectl import REAL_CLUSTER, kubectl
from realcluster import RealClusterDemo
from watching import Watch, name_of, session_as

from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo
from tenant_proxy.server import ProxyServer
from tenant_proxy.tenancy.settings import GenericRuleSettings

pytestmark = pytest.mark.e2e

INGRESS_CLASSES = "/apis/networking.k8s.io/v1/ingressclasses"
RBAC = "rbac.authorization.k8s.io/v1"


class RoleBindingDemo(Demo):
    """The demo with `tenancy.rolebinding_namespaces` on."""

    def settings(self, upstream: Path) -> Settings:
        return with_rolebinding_namespaces(super().settings(upstream))


class RoleBindingRealClusterDemo(RealClusterDemo):
    def settings(self, upstream: Path) -> Settings:
        return with_rolebinding_namespaces(super().settings(upstream))


def with_rolebinding_namespaces(settings: Settings) -> Settings:
    tenancy = settings.tenancy.model_copy(update={"rolebinding_namespaces": True})
    return settings.model_copy(update={"tenancy": tenancy})


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    """Overrides conftest's: every test here runs with RoleBinding namespaces on."""
    env = (
        RoleBindingRealClusterDemo(tmp_path, Path(REAL_CLUSTER))
        if REAL_CLUSTER
        else RoleBindingDemo(tmp_path)
    )
    await env.start()
    try:
        yield env
    finally:
        await env.stop()


def proxy_of(demo: Demo) -> ProxyServer:
    assert demo.proxy is not None
    return demo.proxy


def ingress_class(name: str, parameters_namespace: str) -> dict[str, Any]:
    """An IngressClass whose parameters live in a namespace (scope Namespace)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {
            "controller": "example.com/ingress-nginx",
            "parameters": {
                "apiGroup": "k8s.example.com",
                "kind": "IngressParameters",
                "name": "external-lb",
                "scope": "Namespace",
                "namespace": parameters_namespace,
            },
        },
    }


def reload_with_ingress_field_rule(proxy: ProxyServer) -> None:
    """Reload the config with team-a's ingress classes also chosen by where their parameters
    live: a generic rule reading spec.parameters.namespace, a field no rule read before."""
    tenants = []
    for tenant in proxy.settings.tenancy.tenants:
        if tenant.name == "team-a":
            rule = GenericRuleSettings(
                group="networking.k8s.io",
                resource="ingressclasses",
                names=["nginx-a"],
                field_path="spec.parameters.namespace",
            )
            tenant = tenant.model_copy(update={"ingressclasses": None, "resources": [rule]})
        tenants.append(tenant)
    tenancy = proxy.settings.tenancy.model_copy(update={"tenants": tenants})
    proxy.reload(proxy.settings.model_copy(update={"tenancy": tenancy}))


async def test_reload_adding_a_field_rule_reveals_its_objects_on_an_open_watch_and_in_lists(
    demo: Demo, cluster: Cluster, alice: Path
) -> None:
    # Indexed before the reload, when no rule read their parameters.
    await cluster.create(ingress_class("lb-team-a", "team-a-dev"))
    await cluster.create(ingress_class("lb-team-b", "team-b-dev"))
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get(f"{INGRESS_CLASSES}?watch=1") as resp:
            assert resp.status == 200
            watch = Watch(resp)
            assert [name_of(e) for e in await watch.initial(1)] == ["nginx-a"]

            reload_with_ingress_field_rule(proxy_of(demo))

            added = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (added["type"], name_of(added)) == ("ADDED", "lb-team-a")
            # A later object of hers arrives next: nothing of team-b's came in between.
            await cluster.create(ingress_class("lb-team-a-prod", "team-a-prod"))
            after = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (after["type"], name_of(after)) == ("ADDED", "lb-team-a-prod")

    listed = await kubectl(alice, "get", "ingressclasses", "-o", "name")
    assert listed.code == 0, listed.err
    assert listed.names() == {"nginx-a", "lb-team-a", "lb-team-a-prod"}


async def test_filtered_list_right_after_the_reload_already_sees_the_new_field(
    demo: Demo, cluster: Cluster, alice: Path
) -> None:
    await cluster.create(ingress_class("lb-team-a", "team-a-dev"))
    await cluster.create(ingress_class("lb-team-b", "team-b-dev"))
    reload_with_ingress_field_rule(proxy_of(demo))
    listed = await kubectl(alice, "get", "ingressclasses", "-o", "name")
    assert listed.code == 0, listed.err
    assert listed.names() == {"nginx-a", "lb-team-a"}


# -- RoleBindings -------------------------------------------------------------------------------


def role_binding(name: str, namespace: str, *subjects: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": list(subjects),
    }


def user(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def group(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


@pytest.fixture
async def alice_namespaces(demo: Demo) -> AsyncIterator[Watch]:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get("/api/v1/namespaces?watch=1") as resp:
            assert resp.status == 200
            watch = Watch(resp)
            assert {name_of(e) for e in await watch.initial(2)} == {"team-a-dev", "team-a-prod"}
            yield watch


async def test_rolebinding_naming_alice_shows_its_namespace_on_her_open_watch(
    demo: Demo, cluster: Cluster, alice_namespaces: Watch
) -> None:
    await cluster.create(role_binding("alice-views", "team-b-dev", user("alice")))
    added = await alice_namespaces.until(lambda e: e["type"] != "BOOKMARK")
    assert (added["type"], name_of(added)) == ("ADDED", "team-b-dev")

    await cluster.delete(RBAC, "RoleBinding", "alice-views", "team-b-dev")
    gone = await alice_namespaces.until(lambda e: e["type"] != "BOOKMARK")
    assert (gone["type"], name_of(gone)) == ("DELETED", "team-b-dev")


async def create_all(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    """Create `objects` at once, as a provisioning controller would (bounded concurrency)."""
    gate = asyncio.Semaphore(50)

    async def one(obj: dict[str, Any]) -> None:
        async with gate:
            await cluster.create(obj)

    await asyncio.gather(*(one(obj) for obj in objects))


async def test_rolebindings_for_subjects_already_seeing_the_namespace_bump_nothing(
    demo: Demo, cluster: Cluster, alice_namespaces: Watch
) -> None:
    index = proxy_of(demo).index
    before, touches = index.generation, index.grant_wake.touches
    # team-b's own group, in team-b's namespace: team-b-devs see it whoever they are.
    await create_all(
        cluster,
        [role_binding(f"b-{i}", "team-b-dev", group("tenant-b-devs")) for i in range(200)],
    )
    # The sentinel follows all 200 on the RoleBinding stream: once alice sees it, the index
    # has judged every one of them.
    await cluster.create(role_binding("alice-views", "team-b-dev", user("alice")))
    first = await alice_namespaces.until(lambda e: e["type"] != "BOOKMARK")
    assert (first["type"], name_of(first)) == ("ADDED", "team-b-dev")
    assert index.generation - before == 1  # the sentinel's, and only it
    assert index.grant_wake.touches - touches == 1


async def test_a_burst_of_rolebindings_for_unrelated_subjects_wakes_no_watch_and_few_bumps(
    demo: Demo, cluster: Cluster, alice_namespaces: Watch
) -> None:
    index = proxy_of(demo).index
    loop = asyncio.get_running_loop()
    before, touches, started = index.generation, index.grant_wake.touches, loop.time()
    await create_all(
        cluster, [role_binding(f"robot-{i}", "team-b-dev", user(f"robot-{i}")) for i in range(200)]
    )
    await cluster.create(role_binding("alice-views", "team-b-dev", user("alice")))
    first = await alice_namespaces.until(lambda e: e["type"] != "BOOKMARK")
    assert (first["type"], name_of(first)) == ("ADDED", "team-b-dev")
    bumps, took = index.generation - before, loop.time() - started
    # 201 RoleBindings that change what someone may see, coalesced: while they keep coming,
    # one wake-up per longest delay, then one for the last of them.
    assert index.grant_wake.touches - touches == 201
    assert bumps <= 2 + took / index.grant_wake.longest, (bumps, took)
