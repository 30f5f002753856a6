"""One client address cannot make the proxy do TLS handshakes faster than its rate.

Past its burst, a connection from an address waits for its turn before its handshake; other
addresses are not held up; a turn further away than the handshake timeout is refused at accept.
Nothing here asserts how long anything took: the rates are set so that a held connection's
turn is minutes away, and the tests check what has and has not happened.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from edge_support import GENEROUS, EdgeDemo, closed_by_peer, edge_demo, read_response
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.edge_admission import HandshakeRate

DELAYED = "tenant_proxy_handshakes_delayed_total"
REFUSED = "tenant_proxy_connections_refused_total"
OTHER_ADDRESS = "127.0.0.2"  # loopback is a /8: a second client address on the same machine


async def tls_from(
    demo: EdgeDemo, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = demo.address
    return await asyncio.open_connection(
        host, port, ssl=demo.client_tls(demo.alice()), local_addr=(source, 0)
    )


async def served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(b"GET /version HTTP/1.1\r\nHost: proxy\r\n\r\n")
    code, _ = await read_response(reader)
    return code


async def until_delayed(demo: EdgeDemo, count: int) -> None:
    while demo.sample(DELAYED, listener="tenant") < count:
        await asyncio.sleep(0.01)  # polling a counter the proxy updates on its own


async def test_handshakes_past_the_burst_wait_while_other_addresses_are_served(
    tmp_path: Path,
) -> None:
    # One handshake at once, then one every 1000 s: the second connection's turn is far off.
    limits = {"handshake_rate_per_address": 0.001, "handshake_burst_per_address": 1}
    async with edge_demo(tmp_path, tls_handshake_timeout_seconds=3600, **limits) as demo:
        first = await asyncio.wait_for(tls_from(demo), GENEROUS)
        assert await served(*first) == 200
        held = asyncio.create_task(tls_from(demo))
        await asyncio.wait_for(until_delayed(demo, 1), GENEROUS)
        # Another address handshakes and is answered while the held one still waits.
        other = await asyncio.wait_for(tls_from(demo, OTHER_ADDRESS), GENEROUS)
        assert await served(*other) == 200
        assert not held.done()
        # The first connection, kept alive, is not affected either.
        assert await served(*first) == 200
        held.cancel()
        for _, writer in (first, other):
            writer.close()


async def test_a_turn_beyond_the_handshake_timeout_is_refused_at_accept(tmp_path: Path) -> None:
    limits = {"handshake_rate_per_address": 0.001, "handshake_burst_per_address": 1}
    async with edge_demo(tmp_path, tls_handshake_timeout_seconds=5, **limits) as demo:
        first = await asyncio.wait_for(tls_from(demo), GENEROUS)
        reader, writer = await asyncio.open_connection(*demo.address)  # plain TCP: no handshake
        assert await closed_by_peer(reader)
        assert demo.sample(REFUSED, listener="tenant", reason="handshake_rate") == 1
        assert demo.sample(DELAYED, listener="tenant") == 0
        writer.close()
        # The refusal took no turn, and the kept-alive connection is still served.
        assert await served(*first) == 200
        first[1].close()


async def test_with_no_rate_every_handshake_goes_at_once(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, handshake_rate_per_address=0) as demo:
        connections = [await asyncio.wait_for(tls_from(demo), GENEROUS) for _ in range(5)]
        for reader, writer in connections:
            assert await served(reader, writer) == 200
            writer.close()
        assert demo.sample(DELAYED, listener="tenant") == 0


# -- the bucket, pure ------------------------------------------------------------------------


@given(
    rate=st.floats(0.5, 100),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_turns_never_outrun_the_burst_plus_the_rate(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = HandshakeRate(rate, burst)
    now, starts = 0.0, []
    for gap in gaps:
        now += gap
        wait = bucket.reserve("a", now, max_wait=1e9)
        assert wait is not None
        assert wait >= 0
        starts.append(now + wait)
    # First come, first served.
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(starts))
    for i, start in enumerate(starts):
        # By the time the i-th handshake starts, at most burst + rate * elapsed have started.
        assert i + 1 <= burst + rate * start + 1e-6


@given(rate=st.floats(0.5, 100), burst=st.integers(1, 20), extra=st.integers(1, 20))
def test_a_turn_too_far_off_is_refused_and_takes_nothing(
    rate: float, burst: int, extra: int
) -> None:
    bucket = HandshakeRate(rate, burst)
    max_wait = extra / rate - 1e-9  # the burst, then `extra - 1` turns fit within it
    waits = [bucket.reserve("a", 0.0, max_wait) for _ in range(burst + extra)]
    assert waits[:burst] == [0.0] * burst
    assert all(w is not None for w in waits[burst : burst + extra - 1])
    assert waits[-1] is None
    assert bucket.reserve("a", 0.0, max_wait) is None  # still too far: nothing was taken
    assert bucket.reserve("b", 0.0, max_wait) == 0.0  # another address has its own bucket


@given(rate=st.floats(0.5, 100), burst=st.integers(1, 20), turns=st.integers(1, 40))
def test_addresses_are_forgotten_once_their_bucket_is_full_again(
    rate: float, burst: int, turns: int
) -> None:
    bucket = HandshakeRate(rate, burst)
    for i in range(turns):
        bucket.reserve(f"a{i % 7}", 0.0, max_wait=1e9)
    assert len(bucket) == min(turns, 7)
    later = (burst + turns) / rate + 1
    assert bucket.reserve("b", later, max_wait=1e9) == 0.0
    assert len(bucket) == 1  # only b, which has just taken a turn


def test_no_rate_means_no_wait_and_no_memory() -> None:
    bucket = HandshakeRate(0, 1)
    assert [bucket.reserve("a", 0.0, 0.0) for _ in range(100)] == [0.0] * 100
    assert len(bucket) == 0
