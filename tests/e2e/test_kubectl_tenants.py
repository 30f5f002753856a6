"""kubectl as each tenant through the proxy: exactly its own cluster-scoped objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_kubectl import kubectl

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]


async def names(kubeconfig: Path, resource: str) -> set[str]:
    result = await kubectl(kubeconfig, "get", resource, "-o", "name")
    assert result.code == 0, result.err
    return result.names()


@pytest.mark.parametrize(
    ("who", "resource", "expected"),
    [
        ("alice", "namespaces", {"team-a-dev", "team-a-prod"}),
        ("bob", "namespaces", {"team-b-dev"}),
        ("carol", "namespaces", {"team-c-dev"}),
        ("alice", "nodes", {"node-a1"}),
        ("bob", "nodes", {"node-b1", "node-shared"}),
        ("carol", "nodes", {"node-shared"}),
        ("alice", "persistentvolumes", {"pv-a-data"}),
        ("bob", "persistentvolumes", {"pv-b-data"}),
        ("carol", "persistentvolumes", {"pv-c-data"}),
        ("alice", "storageclasses", {"gold"}),
        ("bob", "storageclasses", {"silver", "bronze"}),
        ("carol", "storageclasses", {"bronze"}),
        ("alice", "ingressclasses", {"nginx-a"}),
        ("bob", "ingressclasses", {"nginx-b"}),
        ("alice", "priorityclasses", {"team-a-high"}),
        ("bob", "priorityclasses", {"team-b-high"}),
    ],
)
async def test_tenant_lists_exactly_its_own(
    demo: Demo, who: str, resource: str, expected: set[str]
) -> None:
    assert await names(demo.dir / f"{who}.kubeconfig", resource) == expected


async def test_admin_listener_sees_everything(admin: Path) -> None:
    assert {"team-a-dev", "team-b-dev", "team-c-dev", "kube-system", "platform"} <= await names(
        admin, "namespaces"
    )
    assert await names(admin, "persistentvolumes") == {
        "pv-a-data",
        "pv-b-data",
        "pv-c-data",
        "pv-unbound",
    }


async def test_tenant_cannot_use_admin_listener(demo: Demo) -> None:
    alice_admin = demo.kubeconfig("alice", ["tenant-a-devs"], admin=True)
    result = await kubectl(alice_admin, "get", "namespaces")
    assert result.code != 0
    assert "Forbidden" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("get", "namespace", "team-b-dev"),
        ("get", "node", "node-b1"),
        ("get", "pv", "pv-b-data"),
        ("get", "storageclass", "silver"),
        ("get", "namespace", "does-not-exist"),
    ],
)
async def test_foreign_or_missing_object_is_not_found(alice: Path, args: tuple[str, ...]) -> None:
    result = await kubectl(alice, *args)
    assert result.code != 0
    kind, name = args[1], args[2]
    assert "(NotFound)" in result.err, result.err
    assert f'"{name}" not found' in result.err, result.err
    assert "Forbidden" not in result.err, kind


async def test_own_object_get_in_every_format(alice: Path) -> None:
    for output in ("name", "json", "yaml", "wide"):
        result = await kubectl(alice, "get", "namespace", "team-a-dev", "-o", output)
        assert result.code == 0, result.err
        assert "team-a-dev" in result.out


async def test_namespaced_rbac_still_decides(alice: Path) -> None:
    own = await kubectl(alice, "get", "pods", "-n", "team-a-dev")
    assert own.code == 0, own.err
    other = await kubectl(alice, "get", "pods", "-n", "team-b-dev")
    assert other.code != 0
    assert 'User "alice" cannot list resource "pods"' in other.err


async def test_paged_rewritten_list_reveals_nothing_of_other_tenants(demo: Demo) -> None:
    """A limit on a rewritten list must not hand out the API server's continue token (it names
    the page's last object, another tenant's) nor a cluster-wide remainingItemCount."""
    from watching import session_as

    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get("/api/v1/persistentvolumes?limit=1") as resp:
            assert resp.status == 200
            raw = await resp.read()
    doc = json.loads(raw)
    assert [i["metadata"]["name"] for i in doc["items"]] == ["pv-a-data"]
    assert "continue" not in doc["metadata"]
    assert "remainingItemCount" not in doc["metadata"]
    for foreign in (b"pv-b-data", b"pv-c-data", b"pv-unbound"):
        assert foreign not in raw
