"""Operating it: audit.k8s.io/v1 Events, access log lines and request ids, as a client's
requests through the demo's proxy produce them (the demo writes Kubernetes-format audit)."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from audit_schema import validate_event
from test_operations import scrape
from watching import session_as

from tenant_proxy.demo import Demo
from tenant_proxy.observability.logs import JSONFormatter
from tenant_proxy.serving.config_watcher import ConfigWatcher

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

WAIT = 20.0
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Lines(logging.Handler):
    """The JSON lines a logger writes, as the configured formatter writes them; awaitable."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JSONFormatter())
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))
        self._changed.set()

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                found = [line for line in self.lines if predicate(line)]
                if found:
                    return found[-1]
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def audit_lines() -> Iterator[Lines]:
    yield from _capture("tenant_proxy.audit")


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    yield from _capture("tenant_proxy.access")


def _capture(name: str) -> Iterator[Lines]:
    logger, handler = logging.getLogger(name), Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def of(audit_id: str, stage: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("auditID") == audit_id and e.get("stage") == stage


async def test_source_ips_list_the_forwarded_chain_then_the_peer(
    demo: Demo, audit_lines: Lines
) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        headers = {"X-Forwarded-For": "203.0.113.7, bogus", "X-Real-Ip": "198.51.100.2"}
        async with alice.get("/api/v1/namespaces/team-a-dev/pods", headers=headers) as resp:
            assert resp.status == 200
            audit_id = resp.headers["Audit-Id"]
    done = await audit_lines.until(of(audit_id, "ResponseComplete"))
    assert done["sourceIPs"] == ["203.0.113.7", "198.51.100.2", "127.0.0.1"]


async def test_a_filtered_list_is_audited_as_a_kubernetes_event(
    demo: Demo, audit_lines: Lines, access_lines: Lines
) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        headers = {"User-Agent": "audit-test/1.0"}
        async with alice.get("/api/v1/persistentvolumes", headers=headers) as resp:
            assert resp.status == 200
            audit_id = resp.headers["Audit-Id"]
    done = await audit_lines.until(of(audit_id, "ResponseComplete"))
    received = await audit_lines.until(of(audit_id, "RequestReceived"))
    for event in (received, done):
        validate_event(event)
    assert done["user"] == {"username": "alice", "groups": ["tenant-a-devs"]}
    assert done["verb"] == "list"
    assert done["requestURI"] == "/api/v1/persistentvolumes"
    assert done["objectRef"] == {"resource": "persistentvolumes", "apiVersion": "v1"}
    assert done["responseStatus"] == {"metadata": {}, "code": 200}
    assert done["sourceIPs"] == ["127.0.0.1"]
    assert done["userAgent"] == "audit-test/1.0"
    assert done["annotations"] == {
        "tenant-proxy.io/tenants": "team-a",
        "tenant-proxy.io/authentication": "x509",
        "tenant-proxy.io/decision": "filtered",
        "tenant-proxy.io/hidden-objects": "3",  # of the four PVs, one is team-a's
    }
    assert received["requestReceivedTimestamp"] == done["requestReceivedTimestamp"]
    assert "responseStatus" not in received
    line = await access_lines.until(lambda a: a.get("request_id") == audit_id)
    assert ISO.match(line["ts"]), line
    assert (line["source"], line["path"], line["code"], line["dropped"]) == (
        "127.0.0.1",
        "/api/v1/persistentvolumes",
        200,
        3,
    )


async def test_a_watch_has_a_response_started_stage(demo: Demo, audit_lines: Lines) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        async with alice.get("/api/v1/namespaces?watch=1") as resp:
            assert resp.status == 200
            audit_id = resp.headers["Audit-Id"]
            started = await audit_lines.until(of(audit_id, "ResponseStarted"))
            assert not [e for e in audit_lines.lines if of(audit_id, "ResponseComplete")(e)]
            await resp.content.readline()
    done = await audit_lines.until(of(audit_id, "ResponseComplete"))
    for event in (started, done):
        validate_event(event)
    assert started["verb"] == "watch"
    assert started["responseStatus"]["code"] == 200


async def test_the_request_id_is_sent_upstream_and_passed_back(
    demo: Demo, audit_lines: Lines, access_lines: Lines
) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        async with alice.get("/api/v1/namespaces/team-a-dev/pods") as resp:
            assert resp.status == 200
            made = resp.headers["Audit-Id"]  # the proxy's, echoed by the API server
        mine = "0b8c3a7e-5f6d-4e21-9a0b-c1d2e3f4a5b6"
        async with alice.get("/api/v1/namespaces/team-a-dev/pods", headers={"Audit-Id": mine}) as r:
            assert r.headers.getall("Audit-Id") == [mine]
        async with alice.get("/api", headers={"Audit-Id": "bad id\twith tab"}) as r:
            discovery = r.headers["Audit-Id"]
            assert discovery != "bad id\twith tab"
    assert (await audit_lines.until(of(made, "ResponseComplete")))["objectRef"] == {
        "resource": "pods",
        "namespace": "team-a-dev",
        "apiVersion": "v1",
    }
    assert (await access_lines.until(lambda a: a.get("request_id") == mine))["verb"] == "list"
    line = await access_lines.until(lambda a: a.get("request_id") == discovery)
    assert (line["path"], line["code"]) == ("/api", 200)


async def test_a_refused_credential_is_one_event_without_a_user(
    demo: Demo, audit_lines: Lines
) -> None:
    assert demo.proxy is not None
    ctx = ssl.create_default_context(cadata=demo.client_ca.cert_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as anon:
        headers = {"Authorization": "Bearer not-a-token"}
        async with anon.get(f"{demo.proxy.tenant_url}/api/v1/nodes", headers=headers) as resp:
            assert resp.status == 401
            audit_id = resp.headers["Audit-Id"]
    event = await audit_lines.until(lambda e: e.get("auditID") == audit_id)
    validate_event(event)
    assert (event["stage"], event["user"], event["responseStatus"]["code"]) == (
        "ResponseStarted",
        {},
        401,
    )
    assert [e["stage"] for e in audit_lines.lines if e.get("auditID") == audit_id] == [
        "ResponseStarted"
    ]


async def test_build_info_and_upstream_request_durations(demo: Demo) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        async with alice.get("/api/v1/namespaces/team-a-dev/pods") as resp:
            assert resp.status == 200
    metrics = await scrape(demo)
    (build,) = [labels for name, labels in metrics if name == "tenant_proxy_build_info"]
    assert dict(build)["version"] == "0.1.0"
    listed = (
        "tenant_proxy_upstream_request_seconds_count",
        (("code", "200"), ("resource", "pods"), ("verb", "list")),
    )
    assert metrics[listed] >= 1
    # The informers' own lists and watches count too.
    informer = (
        "tenant_proxy_upstream_request_seconds_count",
        (("code", "200"), ("resource", "namespaces"), ("verb", "watch")),
    )
    assert metrics[informer] >= 1


async def test_config_reloads_are_counted_by_outcome(demo: Demo, tmp_path: Path) -> None:
    assert demo.proxy is not None
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo.proxy.settings.model_dump(mode="json")))
    watcher = ConfigWatcher(config, demo.proxy)
    watcher.reload()
    config.write_text("tenancy: {tenants: [{}]}\n")
    watcher.reload()
    watcher.reload()
    metrics = await scrape(demo)
    assert metrics[("tenant_proxy_config_reloads_total", (("outcome", "applied"),))] == 1
    assert metrics[("tenant_proxy_config_reloads_total", (("outcome", "refused"),))] == 2


async def test_kubectl_as_is_the_impersonated_user_of_the_event(
    demo: Demo, audit_lines: Lines
) -> None:
    # A cluster admin on the tenant listener acting as bob (as `kubectl --as bob --as-group
    # tenant-b-devs` sends it): bob's view is served, the admin stays the authenticated user.
    async with session_as(demo, "root", ["system:masters"]) as root:
        headers = {"Impersonate-User": "bob", "Impersonate-Group": "tenant-b-devs"}
        async with root.get("/api/v1/namespaces", headers=headers) as resp:
            assert resp.status == 200
            assert {i["metadata"]["name"] for i in (await resp.json())["items"]} == {"team-b-dev"}
            audit_id = resp.headers["Audit-Id"]
    event = await audit_lines.until(of(audit_id, "ResponseComplete"))
    validate_event(event)
    assert event["user"] == {"username": "root", "groups": ["system:masters"]}
    assert event["impersonatedUser"] == {"username": "bob", "groups": ["tenant-b-devs"]}
    assert event["annotations"]["tenant-proxy.io/tenants"] == "team-b"
    received = await audit_lines.until(of(audit_id, "RequestReceived"))
    assert "impersonatedUser" not in received  # known once the impersonation is authorised
