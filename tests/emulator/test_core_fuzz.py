"""Random requests never get a 5xx (except injected faults) and never stop the server."""

from __future__ import annotations

import random

import aiohttp
import yarl

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import user_ssl

ADMIN = ("admin", ("system:masters",))

SEGMENTS = [
    "api",
    "apis",
    "v1",
    "v2",
    "apps",
    "namespaces",
    "team-a-dev",
    "nope",
    "pods",
    "nodes",
    "configmaps",
    "watch",
    "status",
    "log",
    "token",
    "finalize",
    "%2F",
    "%2e%2e",
    "..",
    "",
    "serviceaccounts",
    "ci-bot",
    "storage.k8s.io",
    "storageclasses",
    "gold",
    "x" * 300,
    "healthz",
    "version",
    "openapi",
    "v3",
    "persistentvolumes",
    "scale",
    "proxy",
]
QUERIES = [
    "",
    "labelSelector=a%20in%20(",
    "labelSelector=a!=b,c",
    "fieldSelector=x=y",
    "fieldSelector=metadata.name%3D",
    "limit=-1",
    "limit=abc",
    "limit=1",
    "continue=garbage",
    "continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiIifQ",
    "resourceVersion=zz",
    "resourceVersion=1&resourceVersionMatch=Exact",
    "resourceVersionMatch=Bogus&resourceVersion=5",
    "includeObject=Bogus",
    "dryRun=All",
    "timeoutSeconds=abc",
    "watch=true&timeoutSeconds=1",
]
BODIES = [
    None,
    b"",
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"s"',
    b'{"metadata": 5}',
    b'{"metadata": {"name": 5}}',
    b'{"kind": "Other"}',
    b'{"metadata": {"name": "ok-1"}}',
    b'{"metadata": {"name": "Bad_Name"}}',
    b"\xff\xfe\x00",
    b"a: [1, 2",
    b'[{"op": "bogus"}]',
    b'{"spec": {"containers": "no"}}',
]
CONTENT_TYPES = [
    "application/json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/yaml",
    "text/plain",
    "application/vnd.kubernetes.protobuf",
]
ACCEPTS = [
    "application/json",
    "*/*",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "text/html",
]


TEMPLATES = [
    "/api/v1/{res}",
    "/api/v1/namespaces/{ns}/{res}",
    "/api/v1/namespaces/{ns}/{res}/{name}",
    "/api/v1/namespaces/{ns}/{res}/{name}/{sub}",
    "/api/v1/{res}/{name}",
    "/api/v1/watch/{res}",
    "/apis/storage.k8s.io/v1/storageclasses/{name}",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}",
]
NAMESPACED = ["pods", "configmaps", "secrets", "serviceaccounts", "events", "services"]
CLUSTER = ["namespaces", "nodes", "persistentvolumes"]
NAMES = ["team-a-dev", "ci-bot", "default", "node-a1", "pv-a-data", "gold", "nope", "ok-1"]


def random_path(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 7)))
    return rng.choice(TEMPLATES).format(
        res=rng.choice(NAMESPACED + CLUSTER),
        ns=rng.choice(["team-a-dev", "team-b-dev", "nope"]),
        name=rng.choice(NAMES),
        sub=rng.choice(["status", "log", "token", "scale", "finalize", "exec"]),
    )


async def test_random_requests_never_get_a_server_error(emulator: Emulator) -> None:
    rng = random.Random(20261125)
    connector = aiohttp.TCPConnector(ssl=user_ssl(emulator, *ADMIN))
    async with aiohttp.ClientSession(connector=connector) as s:
        await fire(s, emulator.url, rng)


async def fire(s: aiohttp.ClientSession, base: str, rng: random.Random) -> None:
    seen: dict[int, int] = {}
    for _ in range(800):
        path = random_path(rng)
        query = rng.choice(QUERIES)
        method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        headers = {"Content-Type": rng.choice(CONTENT_TYPES), "Accept": rng.choice(ACCEPTS)}
        url = path + (f"?{query}" if query else "")
        target = yarl.URL(base + url, encoded=True)
        async with s.request(method, target, data=rng.choice(BODIES), headers=headers) as resp:
            seen[resp.status] = seen.get(resp.status, 0) + 1
            assert resp.status < 500 or resp.status == 504, (method, url, await resp.text())
    assert len(seen) > 3
    async with s.get(base + "/api/v1/namespaces") as resp:
        assert resp.status == 200
