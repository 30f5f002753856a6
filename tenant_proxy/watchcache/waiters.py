"""The watches waiting on one cache: woken all at once when it moves, each also at its own alarm.

With 10,000 watches, a timer and a timeout context per wait (asyncio.timeout) were about a
tenth of a fan-out's work on the event loop, and a timer was held by every idle watch. Here a
wait is one future; waits due within the same grain of time share one alarm (10,000 watches
woken together wait again together: one timer).
"""

from __future__ import annotations

import asyncio
import math

ALARM_GRAIN = 0.05
"""Seconds: waits that end within one grain of each other share one timer."""


class Waiters:
    """One cache's waits: each a future, set True by `set` (all at once) or False by its
    alarm, whichever comes first."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future[bool], None] = {}
        self._alarms: dict[int, dict[asyncio.Future[bool], None]] = {}

    def alarm(self, seconds: float) -> int | None:
        """The alarm of a wait of `seconds` from now (None: no alarm)."""
        if math.isinf(seconds):
            return None
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + max(seconds, 0.0)) / ALARM_GRAIN)
        if tick not in self._alarms:
            self._alarms[tick] = {}
            loop.call_at(tick * ALARM_GRAIN, self._ring, tick)
        return tick

    def arm(self, alarm: int | None) -> asyncio.Future[bool] | None:
        """A future set True by `set`, False once `alarm` rings; None when it has rung.
        Whoever awaits it `disarm`s it after, woken or cancelled."""
        due = self._alarms.get(alarm) if alarm is not None else None
        if alarm is not None and due is None:
            return None
        woken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[woken] = None
        if due is not None:
            due[woken] = None
        return woken

    def disarm(self, woken: asyncio.Future[bool], alarm: int | None) -> None:
        """Forget `woken` (O(1)): a wait cancelled (its client gone) leaves nothing behind."""
        self._waiting.pop(woken, None)
        if alarm is not None and (due := self._alarms.get(alarm)) is not None:
            due.pop(woken, None)

    async def wait(self, alarm: int | None) -> bool:
        """True once woken by `set`; False once `alarm` rang (at once if it has rung)."""
        woken = self.arm(alarm)
        if woken is None:
            return False
        try:
            return await woken
        finally:
            self.disarm(woken, alarm)

    def set(self) -> None:
        """Wake every wait."""
        waiting, self._waiting = self._waiting, {}
        for woken in waiting:
            if not woken.done():
                woken.set_result(True)

    def held(self) -> int:
        """How many waits are held: those waiting, and those an alarm still holds."""
        return len(self._waiting.keys() | {w for due in self._alarms.values() for w in due})

    def _ring(self, tick: int) -> None:
        for woken in self._alarms.pop(tick, {}):
            if not woken.done():
                woken.set_result(False)
