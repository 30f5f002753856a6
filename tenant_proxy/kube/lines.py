"""Framing a watch stream: a byte stream in, its lines out, with an explicit size limit (a
`readline` would fail past its buffer, or grow without bound on one huge event). Pure."""

from __future__ import annotations


class LineTooLong(ValueError):
    """A watch line exceeded the limit: the stream must end (never buffer without bound)."""


class LineFramer:
    """Splits a byte stream into lines (without the newline); blank lines are skipped."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            # Only the new chunk is searched, so a long line in small chunks stays linear.
            self._buffer += chunk
            self._check(len(self._buffer))
            return []
        head, *middle, tail = chunk.split(b"\n")
        lines = [bytes(self._buffer) + head, *middle]
        self._buffer = bytearray(tail)
        for length in (*map(len, lines), len(tail)):
            self._check(length)
        return [line for line in lines if line.strip()]

    def _check(self, length: int) -> None:
        if length > self._max:
            raise LineTooLong(f"watch line longer than {self._max} bytes")
