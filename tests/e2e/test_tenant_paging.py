"""Pages of a rewritten list, through the real proxy: the client's `limit` is honoured, the
proxy's continue tokens are opaque and bound to the caller, and every page comes from one
snapshot, while the proxy reads the API server a few objects at a time.

The proxy here reads upstream pages of 3 objects, so a tenant's pages end inside upstream pages
and span several of them; its watch cache does not answer lists (test_cached_lists.py pages
those).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import Cluster
from e2e_kubectl import kubectl
from realcluster import RealClusterDemo
from watching import session_as

from tenant_proxy import pki
from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo

UPSTREAM_PAGE = 3
REAL_CLUSTER = os.environ.get("TENANT_PROXY_E2E_KUBECONFIG")
ALICE = ("alice", ["tenant-a-devs"])
BOB = ("bob", ["tenant-b-devs"])


def paged(base: type[Demo], **limits: int) -> type[Demo]:
    class Paged(base):  # type: ignore[misc,valid-type]
        def settings(self, upstream: Path) -> Settings:
            settings = super().settings(upstream)
            changed = settings.limits.model_copy(
                update={"filtered_list_page": UPSTREAM_PAGE, "lists_from_cache": False, **limits}
            )
            return settings.model_copy(update={"limits": changed})

    return Paged


def limits_of(request: pytest.FixtureRequest) -> dict[str, int]:
    marker = request.node.get_closest_marker("limits")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
async def demo(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Demo]:
    limits = limits_of(request)
    real = paged(RealClusterDemo, **limits)(tmp_path, Path(REAL_CLUSTER)) if REAL_CLUSTER else None
    env = real or paged(Demo, **limits)(tmp_path)
    await env.start()
    try:
        yield env
    finally:
        await env.stop()


def volume(name: str, namespace: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "1Gi"},
        "hostPath": {"path": f"/data/{name}"},
    }
    if namespace is not None:
        spec["claimRef"] = {"name": "data", "namespace": namespace}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
async def volumes(cluster: Cluster) -> dict[str, str | None]:
    """Twenty PVs, alternating between tenants (and unbound), so pages cut anywhere."""
    claims = ["team-a-dev", "team-b-dev", None, "team-a-prod", "team-c-dev"]
    made = {f"pg-{i:02d}": claims[i % len(claims)] for i in range(20)}
    for name, namespace in made.items():
        await cluster.create(volume(name, namespace))
    return made


async def owned_by(cluster: Cluster, tenant: str) -> set[str]:
    """The oracle: PVs bound into a namespace labelled for `tenant`, read as the admin."""
    namespaces = await cluster.list("v1", "Namespace", f"tenant-proxy.io/tenant={tenant}")
    mine = {ns["metadata"]["name"] for ns in namespaces}
    pvs = await cluster.list("v1", "PersistentVolume")
    return {
        pv["metadata"]["name"]
        for pv in pvs
        if (pv.get("spec", {}).get("claimRef") or {}).get("namespace") in mine
    }


async def read_pages(
    demo: Demo, who: tuple[str, list[str]], limit: int, accept: str = "application/json"
) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    token = ""
    async with session_as(demo, *who) as session:
        while True:
            params = {"limit": str(limit), **({"continue": token} if token else {})}
            async with session.get(
                "/api/v1/persistentvolumes", params=params, headers={"Accept": accept}
            ) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            pages.append(page)
            token = page["metadata"].get("continue", "")
            if not token:
                return pages


@pytest.mark.parametrize("limit", [1, 2, 4, 500])
async def test_pages_honour_the_limit_and_add_up_to_the_tenants_list(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None], limit: int
) -> None:
    expected = await owned_by(cluster, "team-a")
    assert expected >= {n for n, ns in volumes.items() if ns in ("team-a-dev", "team-a-prod")}
    pages = await read_pages(demo, ALICE, limit)
    names = [item["metadata"]["name"] for page in pages for item in page["items"]]
    assert all(len(page["items"]) <= limit for page in pages)
    assert len(names) == len(set(names))  # nothing twice
    assert set(names) == expected  # nothing missing, nothing of another tenant
    assert names == sorted(names)  # in the API server's order
    assert len({page["metadata"]["resourceVersion"] for page in pages}) == 1  # one snapshot
    assert all("remainingItemCount" not in page["metadata"] for page in pages)


async def test_kubectl_chunks_show_exactly_the_tenants_volumes(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None], alice: Path, bob: Path
) -> None:
    for who, tenant in ((alice, "team-a"), (bob, "team-b")):
        got = await kubectl(who, "get", "pv", "--chunk-size=2", "-o", "name")
        assert got.code == 0, got.err
        assert got.names() == await owned_by(cluster, tenant)
        table = await kubectl(who, "get", "pv", "--chunk-size=1")
        assert table.code == 0, table.err
        rows = {line.split()[0] for line in table.lines[1:]}
        assert rows == await owned_by(cluster, tenant)


async def test_tokens_are_opaque_and_bound_to_the_caller_and_the_list(
    demo: Demo, volumes: dict[str, str | None]
) -> None:
    first = (await read_pages(demo, ALICE, 1))[0]
    token = first["metadata"]["continue"]
    # The API server's token names the last object of its page; ours reveals nothing.
    padded = token + "=" * (-len(token) % 4)
    assert b"pg-" not in base64.urlsafe_b64decode(padded)
    assert "pg-" not in token
    async with session_as(demo, *BOB) as bob:
        async with bob.get(
            "/api/v1/persistentvolumes", params={"limit": "1", "continue": token}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["reason"] == "BadRequest"
    async with session_as(demo, *ALICE) as alice:
        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        for params in (
            {"limit": "1", "continue": tampered},
            {"limit": "1", "continue": "not-a-token"},
            # The same token on another list (another selector) does not continue it.
            {"limit": "1", "continue": token, "labelSelector": "x=y"},
        ):
            async with alice.get("/api/v1/persistentvolumes", params=params) as resp:
                assert resp.status == 400, params
                body = await resp.json()
                assert body["kind"] == "Status"
                assert body["reason"] == "BadRequest"


async def test_a_first_page_at_resource_version_0_is_continued_like_any(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None]
) -> None:
    """client-go's reflector lists with resourceVersion=0; the API server may then answer
    whole (from its watch cache), and so does the proxy; a paged answer continues as usual."""
    async with session_as(demo, *ALICE) as alice:
        params = {"limit": "2", "resourceVersion": "0"}
        async with alice.get("/api/v1/persistentvolumes", params=params) as resp:
            page = await resp.json()
        names = [i["metadata"]["name"] for i in page["items"]]
        while token := page["metadata"].get("continue"):
            async with alice.get(
                "/api/v1/persistentvolumes", params={"limit": "2", "continue": token}
            ) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            names += [i["metadata"]["name"] for i in page["items"]]
    assert set(names) == await owned_by(cluster, "team-a")


async def test_pages_come_from_the_first_pages_snapshot(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None]
) -> None:
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/persistentvolumes", params={"limit": "2"}) as resp:
            first = await resp.json()
        # A PV of alice's created after the first page, named to sort into a later page.
        await cluster.create(volume("pg-99-late", "team-a-dev"))
        names = [i["metadata"]["name"] for i in first["items"]]
        token = first["metadata"]["continue"]
        while token:
            async with alice.get(
                "/api/v1/persistentvolumes", params={"limit": "2", "continue": token}
            ) as resp:
                page = await resp.json()
            assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue", "")
    assert "pg-99-late" not in names
    assert set(names) == await owned_by(cluster, "team-a") - {"pg-99-late"}


async def test_table_and_metadata_pages(demo: Demo, cluster: Cluster, volumes: Any) -> None:
    expected = await owned_by(cluster, "team-a")
    table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    pages = await read_pages(demo, ALICE, 2, table)
    assert {row["object"]["metadata"]["name"] for p in pages for row in p["rows"]} == expected
    assert all(p["kind"] == "Table" and p["columnDefinitions"] for p in pages)
    partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    pages = await read_pages(demo, ALICE, 3, partial)
    assert all(p["kind"] == "PartialObjectMetadataList" for p in pages)
    assert {i["metadata"]["name"] for p in pages for i in p["items"]} == expected
    assert all("spec" not in i for p in pages for i in p["items"])


@pytest.mark.emulator_only
async def test_a_token_whose_snapshot_is_compacted_is_410_without_the_servers_token(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None]
) -> None:
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/persistentvolumes", params={"limit": "1"}) as resp:
            token = (await resp.json())["metadata"]["continue"]
        await cluster.create(volume("pg-98-newer", None))  # history moves past the snapshot
        demo.emulator.compact()
        async with alice.get(
            "/api/v1/persistentvolumes", params={"limit": "1", "continue": token}
        ) as resp:
            assert resp.status == 410
            body = await resp.json()
    assert body["reason"] == "Expired"
    # The API server's 410 carries a token to an inconsistent remainder, naming a PV: not ours.
    assert "continue" not in body.get("metadata", {})


@pytest.mark.emulator_only
@pytest.mark.parametrize("broken", [1, 2])
async def test_a_page_that_breaks_off_is_a_502_status_not_half_a_list(
    demo: Demo, volumes: dict[str, str | None], broken: int
) -> None:
    """The first or a following upstream page stops mid-body and its connection drops."""
    demo.emulator.cut_next_lists(1, after=broken - 1)
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/persistentvolumes") as resp:
            assert resp.status == 502
            body = await resp.json()
    assert body["kind"] == "Status"
    assert body["code"] == 502
    async with session_as(demo, *ALICE) as alice:  # and the next list is whole again
        async with alice.get("/api/v1/persistentvolumes") as resp:
            assert resp.status == 200


async def test_a_list_continues_across_a_renewal_of_the_serving_key(
    demo: Demo, volumes: dict[str, str | None]
) -> None:
    """Tokens follow the serving key: one renewal keeps the list going; a token two keys old
    is 410 Expired (clients re-list)."""
    assert demo.proxy is not None
    tls = demo.proxy.settings.tls

    def renew() -> None:
        pki.issue_server_cert(demo.client_ca, ["127.0.0.1", "localhost"]).write(
            tls.cert_file, tls.key_file
        )
        assert demo.proxy is not None
        assert demo.proxy.tls.reload_if_changed()

    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/persistentvolumes", params={"limit": "1"}) as resp:
            token = (await resp.json())["metadata"]["continue"]
        renew()
        params = {"limit": "1", "continue": token}
        async with alice.get("/api/v1/persistentvolumes", params=params) as resp:
            assert resp.status == 200, await resp.text()
        renew()
        async with alice.get("/api/v1/persistentvolumes", params=params) as resp:
            assert resp.status == 410
            assert (await resp.json())["reason"] == "Expired"


@pytest.mark.limits(max_filtered_list_bytes=4000)
async def test_a_share_larger_than_the_proxy_holds_must_be_asked_in_pages(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None]
) -> None:
    """Each upstream page (3 PVs) fits the bound, the tenant's whole share (8 PVs) does not."""
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/persistentvolumes") as resp:
            assert resp.status == 500
            body = await resp.json()
    assert body["kind"] == "Status"
    assert "limit" in body["message"]
    pages = await read_pages(demo, ALICE, 2)
    names = {i["metadata"]["name"] for page in pages for i in page["items"]}
    assert names == await owned_by(cluster, "team-a")


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            "PartialObjectMetadataList",
        ),
        ("application/json;as=Table;v=v1;g=meta.k8s.io", "Table"),
        ("application/json", "PersistentVolumeList"),
    ],
)
async def test_a_tenant_owning_nothing_gets_an_empty_list_in_the_form_it_asked(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None], accept: str, kind: str
) -> None:
    """Found by the differential test: the empty answer (asked upstream with a selector that
    matches nothing) came back as whole objects' list kind when metadata was asked for."""
    await cluster.create(
        {
            "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "nothing-yet"},
            # A rule by field alone (no label alternative): owning no namespace, erin's
            # PVs are known to be none without reading them.
            "spec": {
                "members": {"users": ["erin"]},
                "resources": [
                    {
                        "group": "",
                        "resource": "persistentvolumes",
                        "fieldPath": "spec.claimRef.namespace",
                    }
                ],
            },
        }
    )
    erin = ("erin", [])
    async with session_as(demo, *erin) as session:
        async with asyncio.timeout(10):  # the proxy learns of the CR through its informer
            while True:
                async with session.get("/api/v1/namespaces") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)  # polling the proxy, bounded by the timeout
        async with session.get("/api/v1/persistentvolumes", headers={"Accept": accept}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
    assert body["kind"] == kind
    assert not body.get("items")
    assert not body.get("rows")


async def test_a_rewritten_list_answers_yaml_and_honours_limit_on_a_whole_answer(
    demo: Demo, cluster: Cluster, volumes: dict[str, str | None]
) -> None:
    """The API server serves YAML; the proxy reads JSON to judge and answers YAML. A limit is
    a limit even when the API server answered whole (resourceVersion=0, its watch cache)."""
    async with session_as(demo, *ALICE) as alice:
        headers = {"Accept": "application/yaml"}
        async with alice.get("/api/v1/persistentvolumes", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("application/yaml")
            listed = yaml.safe_load(await resp.text())
        params = {"limit": "1", "resourceVersion": "0"}
        async with alice.get("/api/v1/persistentvolumes", params=params) as resp:
            one = await resp.json()
    assert listed["kind"] == "PersistentVolumeList"
    assert {i["metadata"]["name"] for i in listed["items"]} == await owned_by(cluster, "team-a")
    assert len(one["items"]) == 1
    assert one["metadata"]["continue"]


async def test_pages_of_a_pushed_down_list_follow_the_api_servers_tokens(demo: Demo) -> None:
    # bob's nodes are those labelled pool in (team-b, shared): a selector pushed down to the
    # API server, whose continue tokens the client follows (each page judged again by now).
    async with session_as(demo, "bob", ["tenant-b-devs"]) as bob:
        async with bob.get("/api/v1/nodes") as resp:
            whole = {o["metadata"]["name"] for o in (await resp.json())["items"]}
        assert len(whole) >= 2  # pages to follow
        paged: list[str] = []
        token = ""
        while True:
            async with bob.get(f"/api/v1/nodes?limit=1&continue={token}") as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            paged += [o["metadata"]["name"] for o in body["items"]]
            token = body["metadata"].get("continue", "")
            if not token:
                break
    assert sorted(paged) == sorted(whole)
