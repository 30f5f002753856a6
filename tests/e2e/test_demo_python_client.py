"""The official Python `kubernetes` client lists every kind the demo serves, and parses it.

Its models (pydantic, generated from the API's OpenAPI) refuse objects a real cluster would never
serve: a Node without the kubelet's full `status.nodeInfo`, a condition without `status`... So
this is a check of the demo's (the emulator's) object shapes, through the proxy, as the admin and
as a tenant. Kinds the typed client has no API class for (custom resources, metrics.k8s.io) are
listed with its CustomObjectsApi.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    """The demo as `tenant-proxy demo` runs it: with its pods."""
    env = Demo(tmp_path, workloads=True)
    await env.start()
    try:
        yield env
    finally:
        await env.stop()


@dataclass(frozen=True)
class Served:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool


def served_kinds(api: Any) -> list[Served]:
    """Every listable resource the server's discovery names (subresources left out)."""
    lists: list[tuple[str, str, Any]] = [("", "v1", client.CoreV1Api(api).get_api_resources())]
    for group in client.ApisApi(api).get_api_versions().groups:
        for gv in group.versions:
            found = client.CustomObjectsApi(api).get_api_resources(group.name, gv.version)
            lists.append((group.name, gv.version, found))
    return [
        Served(g, v, r.name, r.kind, r.namespaced)
        for g, v, resources in lists
        for r in resources.resources
        if "/" not in r.name and "list" in (r.verbs or [])
    ]


def _api_class(group: str, version: str) -> Any:
    """The typed API class of a group version (`storage.k8s.io/v1` -> StorageV1Api), or None."""
    stem = "Core" if group == "" else group.removesuffix(".k8s.io")
    words = re.split(r"[.\-]", stem)
    name = "".join(w[:1].upper() + w[1:] for w in words) + version.capitalize() + "Api"
    return getattr(client, name, None)


def _lister(api_class: Any, kind: str, namespaced: bool, namespace: str) -> Any:
    """The typed client's list method for a kind: `list_storage_class`,
    `list_namespaced_pod` (a tenant, in one of its namespaces), `..._for_all_namespaces`."""
    flat = kind.lower()
    for attr in dir(api_class):
        if not attr.startswith("list_") or attr.endswith("_with_http_info"):
            continue
        core = attr.removeprefix("list_")
        if namespaced and namespace and core.startswith("namespaced_"):
            if core.removeprefix("namespaced_").replace("_", "") == flat:
                return lambda api, a=attr: getattr(api_class(api), a)(namespace)
        elif namespaced and not namespace and core.endswith("_for_all_namespaces"):
            if core.removesuffix("_for_all_namespaces").replace("_", "") == flat:
                return lambda api, a=attr: getattr(api_class(api), a)()
        elif not namespaced and core.replace("_", "") == flat:
            return lambda api, a=attr: getattr(api_class(api), a)()
    return None


def list_everything(kubeconfig: Path, namespace: str) -> dict[str, Any]:
    """`plural.group/version` -> the typed list (the custom objects' dict where the client has
    no typed API for that version); 403s are left out."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    with api:
        listed: dict[str, Any] = {}
        for served in served_kinds(api):
            key = f"{served.plural}.{served.group}" if served.group else served.plural
            key = f"{key}/{served.version}"
            api_class = _api_class(served.group, served.version)
            lister = (
                _lister(api_class, served.kind, served.namespaced, namespace) if api_class else None
            )
            try:
                if lister is not None:
                    listed[key] = lister(api)
                else:
                    custom = client.CustomObjectsApi(api)
                    if served.namespaced and namespace:
                        listed[key] = custom.list_namespaced_custom_object(
                            served.group, served.version, namespace, served.plural
                        )
                    else:
                        listed[key] = custom.list_cluster_custom_object(
                            served.group, served.version, served.plural
                        )
            except ApiException as exc:
                if exc.status != 403:
                    raise
        return listed


def names(listed: Any) -> set[str]:
    items = listed["items"] if isinstance(listed, dict) else listed.items
    return {i["metadata"]["name"] if isinstance(i, dict) else i.metadata.name for i in items}


async def test_python_client_parses_every_kind_the_admin_lists(demo: Demo) -> None:
    listed = await asyncio.to_thread(list_everything, demo.dir / "admin.kubeconfig", "")
    nodes = listed["nodes/v1"].items
    assert {n.metadata.name for n in nodes} == {"node-a1", "node-b1", "node-shared"}
    for node in nodes:
        info = node.status.node_info
        assert (info.architecture, info.operating_system) == ("amd64", "linux")
        assert node.status.daemon_endpoints.kubelet_endpoint.port == 10250
        assert {c.type for c in node.status.conditions} >= {"Ready", "MemoryPressure"}
    assert {(p.metadata.namespace, p.status.phase) for p in listed["pods/v1"].items} == {
        ("team-a-dev", "Running"),
        ("team-b-dev", "Running"),
    }
    untyped = {k for k, v in listed.items() if isinstance(v, dict)}
    # Only versions the client has no typed API for (betas it dropped, CRDs, metrics) are not
    # parsed by its models.
    assert all(("/v1beta" in k or "/v2beta" in k or "/v1alpha" in k) for k in untyped), untyped
    assert len(listed) - len(untyped) >= 40


async def test_python_client_parses_every_kind_a_tenant_lists(demo: Demo) -> None:
    listed = await asyncio.to_thread(list_everything, demo.dir / "alice.kubeconfig", "team-a-dev")
    assert names(listed["nodes/v1"]) == {"node-a1"}
    assert names(listed["namespaces/v1"]) == {"team-a-dev", "team-a-prod"}
    assert names(listed["persistentvolumes/v1"]) == {"pv-a-data"}
    assert names(listed["storageclasses.storage.k8s.io/v1"]) == {"gold"}
    assert names(listed["nodes.metrics.k8s.io/v1beta1"]) == {"node-a1"}
    assert names(listed["pods/v1"]) == {"web"}
    untyped = {k for k, v in listed.items() if isinstance(v, dict)}
    assert all(("/v1beta" in k or "/v2beta" in k) for k in untyped), untyped
