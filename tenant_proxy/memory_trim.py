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
    when open connections fall to a quarter of their peak, the peak having been `crowd` or more.
    """

    def __init__(self, crowd: int = 256, trim: Callable[[], object] | None = None) -> None:
        self._crowd, self._trim = crowd, trim if trim is not None else _malloc_trim()
        self._peak = 0
        self._pending: asyncio.TimerHandle | None = None

    def after_admit(self, total: int) -> None:
        self._peak = max(self._peak, total)

    def after_release(self, total: int) -> None:
        if self._trim is None or self._pending is not None:
            return
        if self._peak >= self._crowd and total <= self._peak // 4:
            # Soon, not now: the rest of the crowd is usually closing in the same breath.
            self._pending = asyncio.get_running_loop().call_later(0.1, self._run)

    def _run(self) -> None:
        self._pending = None
        self._peak = 0
        if self._trim is not None:
            gc.collect()  # connections caught in reference cycles free their buffers first
            self._trim()
