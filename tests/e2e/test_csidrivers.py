"""CSIDrivers, a class kind that is one row of the resource table: through the proxy, a tenant
lists, gets and watches exactly its own (by name, whole-name regex or label selector), whether
its rule comes from the config file or from a Tenant CR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster, until
from e2e_kubectl import kubectl
from watching import Watch, name_of, session_as

from tenant_proxy.demo import Demo
from tenant_proxy.tenancy.settings import ClassRuleSettings, TenantSettings

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

CSI_DRIVERS = "/apis/storage.k8s.io/v1/csidrivers"
CSI = ("storage.k8s.io/v1", "CSIDriver")
OWN = {"a.csi.example.com", "team-d-local", "labelled.csi.example.com"}
TENANT_CR_WITHIN = 60.0


def csi_driver(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"attachRequired": False},
    }


async def create_drivers(cluster: Cluster) -> None:
    await cluster.create(csi_driver("a.csi.example.com"))  # by name
    await cluster.create(csi_driver("team-d-local"))  # by regex
    await cluster.create(csi_driver("labelled.csi.example.com", {"csi": "team-d"}))  # selector
    await cluster.create(csi_driver("xteam-d-local"))  # the regex must match the whole name
    await cluster.create(csi_driver("other.csi.example.com", {"csi": "team-e"}))


def rule() -> dict[str, Any]:
    return {
        "names": ["a.csi.example.com"],
        "regex": "team-d-.*",
        "selector": {"matchLabels": {"csi": "team-d"}},
    }


def reload_with_csi_tenant(demo: Demo) -> None:
    """The config file gains tenant team-d (user dave) with a csidrivers rule."""
    proxy = demo.proxy
    assert proxy is not None
    tenant = TenantSettings.model_validate(
        {"name": "team-d", "members": {"users": ["dave"]}, "csidrivers": rule()}
    )
    assert tenant.class_rule("csidrivers") == ClassRuleSettings.model_validate(rule())
    tenancy = proxy.settings.tenancy.model_copy(
        update={"tenants": [*proxy.settings.tenancy.tenants, tenant]}
    )
    proxy.reload(proxy.settings.model_copy(update={"tenancy": tenancy}))


async def names(kubeconfig: Path) -> set[str]:
    result = await kubectl(kubeconfig, "get", "csidrivers", "-o", "name")
    assert result.code == 0, result.err
    return result.names()


async def test_config_tenant_lists_and_gets_exactly_its_own_csi_drivers(
    demo: Demo, cluster: Cluster
) -> None:
    await create_drivers(cluster)
    reload_with_csi_tenant(demo)
    dave = demo.kubeconfig("dave", [])
    assert await names(dave) == OWN
    own = await kubectl(dave, "get", "csidriver", "team-d-local", "-o", "name")
    assert own.code == 0, own.err
    for foreign in ("xteam-d-local", "other.csi.example.com"):
        result = await kubectl(dave, "get", "csidriver", foreign)
        assert result.code != 0
        assert "NotFound" in result.err, result.err


async def test_config_tenants_watch_shows_only_its_csi_drivers(
    demo: Demo, cluster: Cluster
) -> None:
    await create_drivers(cluster)
    reload_with_csi_tenant(demo)
    async with session_as(demo, "dave", []) as session:
        async with session.get(f"{CSI_DRIVERS}?watch=1") as resp:
            assert resp.status == 200
            watch = Watch(resp)
            initial = await watch.initial(len(OWN))
            assert {name_of(e) for e in initial} == OWN
            assert {e["type"] for e in initial} == {"ADDED"}
            await cluster.create(csi_driver("not-team-d.csi.example.com"))
            await cluster.create(csi_driver("team-d-new"))
            # The foreign driver, created first, never shows: the next event is dave's.
            added = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (added["type"], name_of(added)) == ("ADDED", "team-d-new")


async def test_tenant_cr_rules_csi_drivers_too(demo: Demo, cluster: Cluster) -> None:
    await create_drivers(cluster)
    await cluster.create(
        {
            "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "team-e"},
            "spec": {
                "members": {"users": ["erin"]},
                "csiDrivers": {"selector": {"matchLabels": {"csi": "team-e"}}},
            },
        }
    )
    erin = demo.kubeconfig("erin", [])

    async def only_hers() -> set[str] | None:
        # Until the index has read the Tenant, erin is in no tenant: RBAC answers her.
        result = await kubectl(erin, "get", "csidrivers", "-o", "name")
        seen = result.names() if result.code == 0 else None
        return seen if seen == {"other.csi.example.com"} else None

    await until(only_hers, "erin's csidrivers list shows only hers", TENANT_CR_WITHIN)
