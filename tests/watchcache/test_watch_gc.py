"""Waking every watch of a cache holds Python's cyclic collector off for exactly the turn in
which the woken watches run, and leaves it as it found it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from tenant_proxy.gc_pauses import wake_without_collection


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


async def woken_with_collector(waiters: int, wakes: int) -> list[bool]:
    """Whether the collector ran while each of `waiters` tasks woke, after `wakes` wake-ups of
    the events they wait on in one turn."""
    events = [asyncio.Event() for _ in range(wakes)]
    seen: list[bool] = []

    async def watch(event: asyncio.Event) -> None:
        await event.wait()
        seen.append(gc.isenabled())

    tasks = [asyncio.ensure_future(watch(events[i % wakes])) for i in range(waiters)]
    await asyncio.sleep(0)  # every watch waiting
    for event in events:
        wake_without_collection(event)
    await asyncio.gather(*tasks)
    return seen


async def test_the_woken_watches_run_with_the_collector_off_and_it_is_back_after() -> None:
    gc.enable()
    seen = await woken_with_collector(waiters=100, wakes=1)
    assert seen == [False] * 100
    assert gc.isenabled()


async def test_wakes_in_the_same_turn_hold_it_off_until_the_last_has_run() -> None:
    gc.enable()
    seen = await woken_with_collector(waiters=90, wakes=3)
    assert seen == [False] * 90
    assert gc.isenabled()


async def test_a_collector_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    await woken_with_collector(waiters=10, wakes=2)
    assert not gc.isenabled()


def test_a_wake_outside_the_event_loop_sets_the_event_and_holds_nothing() -> None:
    gc.enable()
    event = asyncio.Event()
    wake_without_collection(event)
    assert event.is_set()
    assert gc.isenabled()
