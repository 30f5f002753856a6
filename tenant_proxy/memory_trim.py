"""Freed heap handed back to the system once a crowd of connections has gone."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable


def _malloc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to trim with
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class MemoryTrim:
    """Hands freed heap back to the system once most of a crowd of connections has gone.

    Each connection holds tens of KiB (TLS buffers, parser, handler); freed, glibc keeps them
    in its arenas, so 2,000 idle connections left ~100 MiB of RSS behind after they closed.
    `malloc_trim` returns it (measured in benchmarks/abuse.py). It runs at most once per crowd:
    when open connections have fallen to a quarter of their peak (the peak having been `crowd`
    or more) and the crowd has stopped leaving: 0.1 s after the last close, or 1 s after the
    quarter was reached. (Trimming at once, while hundreds still closed, left up to 60 MiB
    behind in some runs.)
    """

    QUIET = 0.1  # seconds without a close: the crowd has left
    LATEST = 1.0  # seconds after the quarter was reached: trim even if closes go on

    def __init__(self, crowd: int = 256, trim: Callable[[], object] | None = None) -> None:
        self._crowd, self._trim = crowd, trim if trim is not None else _malloc_trim()
        self._peak = 0
        self._pending: asyncio.TimerHandle | None = None
        self._due = 0.0  # loop time by which the pending trim runs, however many closes follow

    def after_admit(self, total: int) -> None:
        self._peak = max(self._peak, total)

    def after_release(self, total: int) -> None:
        if self._trim is None:
            return
        loop = asyncio.get_running_loop()
        if self._pending is not None:
            # Still leaving: wait for a quiet moment (up to the latest time).
            self._pending.cancel()
            self._pending = loop.call_at(min(loop.time() + self.QUIET, self._due), self._run)
        elif self._peak >= self._crowd and total <= self._peak // 4:
            self._due = loop.time() + self.LATEST
            self._pending = loop.call_later(self.QUIET, self._run)

    def _run(self) -> None:
        self._pending = None
        self._peak = 0
        if self._trim is not None:
            gc.collect()  # connections caught in reference cycles free their buffers first
            self._trim()
