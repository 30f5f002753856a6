"""Open watches of one process, so that a drain can end each of them cleanly.

On SIGTERM the proxy stops accepting, then ends every watch with a proper end of stream (clients
re-watch, against another replica), while ordinary requests get the drain deadline to finish.
"""

from __future__ import annotations

from collections.abc import Callable


class OpenStreams:
    """Callbacks that end each open stream; `end_all` runs them once, on drain."""

    def __init__(self) -> None:
        self._enders: set[Callable[[], None]] = set()
        self.draining = False

    def add(self, ender: Callable[[], None]) -> Callable[[], None]:
        """Register `ender`; returns the function that unregisters it."""
        if self.draining:
            ender()
        self._enders.add(ender)
        return lambda: self._enders.discard(ender)

    def __len__(self) -> int:
        return len(self._enders)

    def end_all(self) -> int:
        self.draining = True
        enders, self._enders = list(self._enders), set()
        for ender in enders:
            ender()
        return len(enders)
