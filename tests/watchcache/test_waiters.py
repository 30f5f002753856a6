"""A cache's waiting watches: woken together by a change, each also by its own alarm; a wait
cancelled (its client gone) or ended leaves nothing behind."""

from __future__ import annotations

import asyncio

from tenant_proxy.watchcache.waiters import Waiters


async def test_a_wake_reaches_every_waiting_watch() -> None:
    waiters = Waiters()
    alarm = waiters.alarm(60)
    waits = [asyncio.ensure_future(waiters.wait(alarm)) for _ in range(100)]
    await asyncio.sleep(0)
    waiters.set()
    assert await asyncio.wait_for(asyncio.gather(*waits), 10) == [True] * 100


async def test_a_wait_without_a_wake_ends_at_its_alarm() -> None:
    waiters = Waiters()
    short, long = waiters.alarm(0.01), waiters.alarm(60)
    quick = asyncio.ensure_future(waiters.wait(short))
    slow = asyncio.ensure_future(waiters.wait(long))
    assert await asyncio.wait_for(quick, 10) is False
    assert not slow.done()
    waiters.set()
    assert await asyncio.wait_for(slow, 10) is True


async def test_a_wait_on_an_alarm_that_has_rung_ends_at_once() -> None:
    waiters = Waiters()
    alarm = waiters.alarm(0)
    assert await asyncio.wait_for(waiters.wait(alarm), 10) is False
    assert await asyncio.wait_for(waiters.wait(alarm), 10) is False


async def test_no_alarm_waits_for_a_wake_alone() -> None:
    waiters = Waiters()
    wait = asyncio.ensure_future(waiters.wait(waiters.alarm(float("inf"))))
    await asyncio.sleep(0.05)
    assert not wait.done()
    waiters.set()
    assert await asyncio.wait_for(wait, 10) is True


async def test_a_cancelled_or_rung_wait_is_not_kept() -> None:
    """10,000 idle watches each time out every bookmark period: what a wait held must go with
    it, else a quiet cache grows without bound."""
    waiters = Waiters()
    cancelled = asyncio.ensure_future(waiters.wait(waiters.alarm(60)))
    rung = asyncio.ensure_future(waiters.wait(waiters.alarm(0.01)))
    await asyncio.sleep(0)
    assert waiters.held() == 2
    cancelled.cancel()
    assert await asyncio.wait_for(rung, 10) is False
    await asyncio.gather(cancelled, return_exceptions=True)
    assert waiters.held() == 0
