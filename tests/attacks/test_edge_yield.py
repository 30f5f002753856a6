"""New connections yield to requests being served.

While a request is served on the listener (for its first `short_request` seconds), a new
connection's TLS handshake, and then its first read, wait for the moment none is, at most
`yield_to_requests` each: a connection the proxy refuses and closes costs the loop a burst of
work (handshake, reading, the answer), which otherwise landed inside another tenant's request
(benchmarks/abuse.py phase (a)). Nothing here asserts how long anything took: the limits are set
so that a yielding handshake's bound is an hour away, or so that it must pass while a request
stays in progress, and the tests check what has and has not happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from edge_support import GENEROUS, EdgeDemo, edge_demo, read_response
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.config import LimitSettings
from tenant_proxy.edge import EdgeLimits
from tenant_proxy.edge_admission import RequestsInProgress, long_running
from tenant_proxy.serving import listeners

OPEN = "tenant_proxy_connections_open"
IN_FLIGHT = "tenant_proxy_requests_in_flight"
# A create whose body comes slowly: an ordinary request, in progress until its body ends.
SLOW_CREATE = (
    b"POST /api/v1/namespaces/team-a-dev/configmaps HTTP/1.1\r\nHost: proxy\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)
BODY = b'{"metadata": {"name": "slowly"}}'
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def yielding(monkeypatch: pytest.MonkeyPatch, seconds: float, short: float) -> None:
    """The listeners' edge limits, with these two (not settings: the edge's own defaults)."""
    made: Callable[[LimitSettings], EdgeLimits] = listeners.edge_limits

    def edge_limits(limits: LimitSettings) -> EdgeLimits:
        return dataclasses.replace(made(limits), yield_to_requests=seconds, short_request=short)

    monkeypatch.setattr(listeners, "edge_limits", edge_limits)


async def tls(demo: EdgeDemo) -> Connection:
    host, port = demo.address
    return await asyncio.open_connection(host, port, ssl=demo.client_tls(demo.alice()))


async def served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(b"GET /version HTTP/1.1\r\nHost: proxy\r\n\r\n")
    code, _ = await read_response(reader)
    return code


async def creating(demo: EdgeDemo) -> Connection:
    """A connection whose create is being served: its body is half sent."""
    reader, writer = await asyncio.wait_for(tls(demo), GENEROUS)
    writer.write(SLOW_CREATE % len(BODY) + BODY[:10])
    await asyncio.wait_for(until(demo, IN_FLIGHT, 1), GENEROUS)
    return reader, writer


async def until(demo: EdgeDemo, gauge: str, value: float) -> None:
    while demo.sample(gauge, listener="tenant") < value:
        await asyncio.sleep(0.01)  # polling a gauge the proxy updates on its own


async def test_a_new_handshake_waits_until_no_request_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yielding(monkeypatch, seconds=3600, short=3600)
    async with edge_demo(tmp_path) as demo:
        kept = await asyncio.wait_for(tls(demo), GENEROUS)
        create_reader, create = await creating(demo)
        newcomer = asyncio.create_task(tls(demo))
        await asyncio.wait_for(until(demo, OPEN, 3), GENEROUS)  # accepted, handshake held
        # Established connections are served meanwhile; the newcomer still waits.
        assert await served(*kept) == 200
        assert not newcomer.done()
        create.write(BODY[10:])  # the request in progress ends: the newcomer's turn
        code, _ = await read_response(create_reader)
        assert code == 201
        fresh = await asyncio.wait_for(newcomer, GENEROUS)
        assert await served(*fresh) == 200
        for _, writer in (kept, fresh, (create_reader, create)):
            writer.close()


async def test_a_new_connection_is_served_while_a_request_stays_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The create is in progress all along: only the bound lets the newcomer through, for its
    # handshake and then for its first read.
    yielding(monkeypatch, seconds=0.05, short=3600)
    async with edge_demo(tmp_path) as demo:
        create_reader, create = await creating(demo)
        for _ in range(3):
            fresh = await asyncio.wait_for(tls(demo), GENEROUS)
            assert await asyncio.wait_for(served(*fresh), GENEROUS) == 200
            fresh[1].close()
        assert demo.sample(IN_FLIGHT, listener="tenant") == 1  # still being served
        create.write(BODY[10:])
        code, _ = await read_response(create_reader)
        assert code == 201
        create.close()


async def test_a_watch_in_progress_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yielding(monkeypatch, seconds=3600, short=3600)
    async with edge_demo(tmp_path) as demo:
        reader, writer = await asyncio.wait_for(tls(demo), GENEROUS)
        writer.write(
            b"GET /api/v1/namespaces/team-a-dev/configmaps?watch=1 HTTP/1.1\r\nHost: p\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS)
        assert head.startswith(b"HTTP/1.1 200")
        fresh = await asyncio.wait_for(tls(demo), GENEROUS)
        assert await served(*fresh) == 200
        for w in (writer, fresh[1]):
            w.close()


# -- the requests in progress, pure ---------------------------------------------------------


@given(
    short=st.floats(0.01, 10),
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.floats(0, 3)), min_size=1, max_size=100
    ),
)
def test_a_request_counts_while_served_and_for_its_first_short_seconds(
    short: float, steps: list[tuple[bool, int, float]]
) -> None:
    requests = RequestsInProgress(short)
    model: dict[int, float] = {}
    now = 0.0
    for start, key, gap in steps:
        now += gap
        if start:
            requests.started(key, now)
            model[key] = now
        else:
            requests.finished(key)
            model.pop(key, None)
        later = now + gap / 2
        assert requests.short_in_progress(later) == any(later - t < short for t in model.values())
        assert len(requests) == len(model)


@pytest.mark.parametrize(
    ("path", "query", "upgrade"),
    [
        ("/api/v1/namespaces/a/configmaps", "watch=1", False),
        ("/api/v1/namespaces/a/configmaps", "resourceVersion=5&watch=true", False),
        ("/api/v1/watch/namespaces", "", False),
        ("/api/v1/namespaces/a/pods/p/exec", "command=sh", False),
        ("/api/v1/namespaces/a/pods/p/portforward", "", False),
        ("/api/v1/namespaces/a/pods/p/log", "follow=true", False),
        ("/api/v1/namespaces/a/services/s/proxy/metrics", "", False),
        ("/api/v1/namespaces/a/pods/p/attach", "", False),
        ("/apis/apps/v1/deployments", "", True),  # a WebSocket upgrade (a dashboard's watch)
    ],
)
def test_long_running_requests_are_not_waited_for(path: str, query: str, upgrade: bool) -> None:
    assert long_running(path, query, upgrade)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/namespaces/a/configmaps/bench", ""),
        ("/api/v1/namespaces", "limit=500"),
        ("/apis/apps/v1/namespaces/a/deployments", "labelSelector=app%3Dweb"),
        ("/version", ""),
    ],
)
def test_ordinary_requests_are_waited_for(path: str, query: str) -> None:
    assert not long_running(path, query, False)
