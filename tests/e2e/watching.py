"""A watch through the proxy as a test sees it: events read line by line, with timeouts."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tenant_proxy import pki
from tenant_proxy.demo import Demo

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
# Seconds any one expected event may take on a loaded 2-core machine: a bound on waiting
# for a condition, not a claim about speed (timing is measured in benchmarks/).
WAIT = 20.0


def tls_for(demo: Demo, user: str, groups: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=demo.client_ca.cert_pem.decode())
    pair = pki.issue_client_cert(demo.client_ca, user, groups)
    with tempfile.TemporaryDirectory() as tmp:
        pair.write(Path(tmp) / "c", Path(tmp) / "k")
        ctx.load_cert_chain(Path(tmp) / "c", Path(tmp) / "k")
    return ctx


def session_as(demo: Demo, user: str, groups: list[str]) -> aiohttp.ClientSession:
    assert demo.proxy is not None
    return aiohttp.ClientSession(
        base_url=demo.proxy.tenant_url,
        connector=aiohttp.TCPConnector(ssl=tls_for(demo, user, groups), limit=0),
    )


class Watch:
    """An open watch; `next()` returns the next event or fails after `timeout` seconds."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[dict[str, Any]] = []

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        if not line:
            raise EOFError("the watch ended")
        event: dict[str, Any] = orjson.loads(line)
        self.events.append(event)
        return event

    async def until(self, predicate: Any, timeout: float = WAIT) -> dict[str, Any]:
        """The first event matching `predicate`, skipping others (bookmarks, ...)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next(max(0.01, deadline - loop.time()))
            if predicate(event):
                return event

    async def initial(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]

    async def ended(self, timeout: float = WAIT) -> bool:
        """True once the stream ends; events still arriving are kept in `events`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                await self.next(max(0.01, deadline - loop.time()))
        except EOFError:
            return True


def name_of(event: dict[str, Any]) -> str:
    obj = event["object"]
    if obj.get("kind") == "Table":
        return str(obj["rows"][0]["object"]["metadata"]["name"])
    return str(obj["metadata"]["name"])


def is_(kind: str, name: str) -> Any:
    return lambda e: (
        e["type"] == kind and e["object"].get("kind") != "Status" and name_of(e) == name
    )
