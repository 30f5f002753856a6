"""Coalescing a burst of changes into few wake-ups, on the event loop's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Coalescer:
    """Calls `fire` once `touch()`es pause for `quiet` seconds, and at the latest `longest`
    seconds after the first of them: a burst costs one call per `longest`, a lone touch is
    acted on within `quiet`."""

    def __init__(self, fire: Callable[[], None], quiet: float, longest: float) -> None:
        self.fire, self.quiet, self.longest = fire, quiet, longest
        self.touches = 0
        self._first = self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self._timer is not None

    def touch(self) -> None:
        self.touches += 1
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        if self._timer is None:
            self._first = self._last
            self._timer = loop.call_at(self._last + self.quiet, self._due)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        # One timer per burst, pushed back while touches keep coming, not one per touch.
        loop = asyncio.get_running_loop()
        due = min(self._last + self.quiet, self._first + self.longest)
        if due - loop.time() > 0.001:
            self._timer = loop.call_at(due, self._due)
            return
        self._timer = None
        self.fire()
