"""A client whose connections the proxy must close unread (a refused body) is paced.

Each such connection makes its client reconnect: a TLS handshake on the proxy's event loop.
Past a burst of them, the address's new connections wait for their turn before the handshake;
other addresses, and addresses whose connections are never closed unread, are never held up;
a turn further off than the handshake timeout is refused at accept. Nothing here asserts how
long anything took: the rates are set so that a paced connection's turn is minutes away, and
the tests check what has and has not happened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_support import GENEROUS, EdgeDemo, closed_by_peer, edge_demo, read_response
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.edge_admission import ReconnectPacing

DELAYED = "tenant_proxy_handshakes_delayed_total"
REFUSED = "tenant_proxy_connections_refused_total"
OTHER_ADDRESS = "127.0.0.2"  # loopback is a /8: a second client address on the same machine
# One connection closed unread is allowed; after it, one turn every 1000 s.
PACED = {"reconnect_rate_after_refusals": 0.001, "reconnect_burst_after_refusals": 1}
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def tls_from(demo: EdgeDemo, source: str = "127.0.0.1") -> Connection:
    host, port = demo.address
    return await asyncio.open_connection(
        host, port, ssl=demo.client_tls(demo.alice()), local_addr=(source, 0)
    )


async def served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(b"GET /version HTTP/1.1\r\nHost: proxy\r\n\r\n")
    code, _ = await read_response(reader)
    return code


async def refused_body(demo: EdgeDemo, length: int) -> None:
    """A POST with an encoded body of `length` bytes, answered 415; the body is sent after."""
    reader, writer = await asyncio.wait_for(tls_from(demo), GENEROUS)
    writer.write(
        b"POST /api/v1/namespaces/team-a-dev/configmaps HTTP/1.1\r\nHost: proxy\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )
    code, _ = await read_response(reader)
    assert code == 415
    writer.write(bytes(length))
    if length >= 256 * 1024:
        assert await closed_by_peer(reader)
        writer.close()
    else:
        assert await served(reader, writer) == 200  # kept: the body was read and dropped
        writer.close()


async def until_delayed(demo: EdgeDemo, count: int) -> None:
    while demo.sample(DELAYED, listener="tenant") < count:
        await asyncio.sleep(0.01)  # polling a counter the proxy updates on its own


async def test_an_address_closed_unread_is_paced_while_other_addresses_are_served(
    tmp_path: Path,
) -> None:
    async with edge_demo(tmp_path, tls_handshake_timeout_seconds=3600, **PACED) as demo:
        kept = await asyncio.wait_for(tls_from(demo), GENEROUS)
        assert await served(*kept) == 200
        await refused_body(demo, 1024 * 1024)
        # The burst is spent: the next connection from the address waits for its turn.
        paced = asyncio.create_task(tls_from(demo))
        await asyncio.wait_for(until_delayed(demo, 1), GENEROUS)
        # Another address handshakes and is answered while the paced one still waits.
        other = await asyncio.wait_for(tls_from(demo, OTHER_ADDRESS), GENEROUS)
        assert await served(*other) == 200
        assert not paced.done()
        # The address's connection from before, kept alive, is served as ever.
        assert await served(*kept) == 200
        paced.cancel()
        for _, writer in (kept, other):
            writer.close()


async def test_a_turn_beyond_the_handshake_timeout_is_refused_at_accept(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, tls_handshake_timeout_seconds=5, **PACED) as demo:
        await refused_body(demo, 1024 * 1024)
        reader, writer = await asyncio.open_connection(*demo.address)  # plain TCP: no handshake
        assert await closed_by_peer(reader)
        assert demo.sample(REFUSED, listener="tenant", reason="paced") == 1
        assert demo.sample(DELAYED, listener="tenant") == 0
        writer.close()
        # Another address is not paced.
        other = await asyncio.wait_for(tls_from(demo, OTHER_ADDRESS), GENEROUS)
        assert await served(*other) == 200
        other[1].close()


async def test_a_short_refused_body_keeps_its_connection_and_costs_no_turn(
    tmp_path: Path,
) -> None:
    async with edge_demo(tmp_path, tls_handshake_timeout_seconds=5, **PACED) as demo:
        for _ in range(3):
            await refused_body(demo, 100 * 1024)
        fresh = await asyncio.wait_for(tls_from(demo), GENEROUS)
        assert await served(*fresh) == 200
        fresh[1].close()
        assert demo.sample(DELAYED, listener="tenant") == 0


async def test_many_connections_never_closed_unread_are_never_paced(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, **PACED) as demo:
        connections = await asyncio.wait_for(
            asyncio.gather(*(tls_from(demo) for _ in range(20))), GENEROUS
        )
        for reader, writer in connections:
            assert await served(reader, writer) == 200
            writer.close()
        assert demo.sample(DELAYED, listener="tenant") == 0


# -- the pacing, pure ------------------------------------------------------------------------


@given(
    rate=st.floats(0.5, 100),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_an_address_closed_unread_each_time_gets_no_more_than_burst_plus_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    pacing = ReconnectPacing(rate, burst)
    now = 0.0
    for started, gap in enumerate(gaps, start=1):
        wait = pacing.turn("a", now + gap, max_wait=1e9)
        assert wait is not None
        now += gap + wait  # its handshake starts, its body is refused, it is closed
        pacing.closed_unread("a", now)
        assert started <= burst + rate * now + 1e-6


@given(rate=st.floats(0.5, 100), burst=st.integers(1, 20), closes=st.integers(1, 30))
def test_a_turn_too_far_off_is_refused_and_takes_nothing(
    rate: float, burst: int, closes: int
) -> None:
    pacing = ReconnectPacing(rate, burst)
    for _ in range(burst + closes):
        pacing.closed_unread("a", 0.0)
    too_far = pacing.turn("a", 0.0, max_wait=closes / rate - 1e-6)
    assert too_far is None
    assert pacing.turn("a", 0.0, max_wait=(closes + 1) / rate + 1e-6) is not None
    assert pacing.turn("b", 0.0, max_wait=0.0) == 0.0  # another address has its own bucket


@given(rate=st.floats(0.01, 100), burst=st.integers(1, 20), turns=st.integers(1, 500))
def test_an_address_never_closed_unread_never_waits(rate: float, burst: int, turns: int) -> None:
    pacing = ReconnectPacing(rate, burst)
    assert [pacing.turn("a", 0.0, max_wait=0.0) for _ in range(turns)] == [0.0] * turns
    assert len(pacing) == 0


@given(rate=st.floats(0.5, 100), burst=st.integers(1, 20), closes=st.integers(1, 40))
def test_addresses_are_forgotten_once_their_bucket_is_full_again(
    rate: float, burst: int, closes: int
) -> None:
    pacing = ReconnectPacing(rate, burst)
    for i in range(closes):
        pacing.closed_unread(f"a{i % 7}", 0.0)
    assert len(pacing) == min(closes, 7)
    pacing.closed_unread("b", (burst + closes) / rate + 1)
    assert len(pacing) == 1  # only b, which has just been closed unread


def test_no_rate_means_no_pacing_and_no_memory() -> None:
    pacing = ReconnectPacing(0, 1)
    for _ in range(100):
        pacing.closed_unread("a", 0.0)
    assert pacing.turn("a", 0.0, 0.0) == 0.0
    assert len(pacing) == 0
