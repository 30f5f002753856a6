"""The rest of a request body the proxy answered without reading (401, 403, 413, 415...).

As Go's net/http server, which kube-apiserver runs on (server.go: `maxPostHandlerReadBytes`,
`closeWriteAndWait`, `rstAvoidanceDelay`): a rest of less than 256 KiB is read and thrown away
after the answer, so that the connection serves the client's next request (it would otherwise
reconnect: a new TLS handshake); a longer rest is never read: the answer says `Connection:
close`, and the connection is reset half a second later (time for the answer to arrive)
without another byte read. A body of unknown length (chunked) is read up to 256 KiB looking for
its end, and its connection closed past that.

Never reading means never decrypting either: an ordinary close would start a TLS shutdown, in
which asyncio's and uvloop's TLS read and decrypt everything the client still sends while
waiting for its close_notify (measured: a client POSTing 3 MiB bodies back to back made the
proxy decrypt each one; benchmarks/abuse.py). `HoldingTransport` keeps that close from
happening.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import StreamReader

DISCARD_LIMIT = 256 * 1024  # Go's maxPostHandlerReadBytes
RESET_DELAY = 0.5  # Go's rstAvoidanceDelay


def worth_discarding(content_length: int | None, received: int, limit: int = DISCARD_LIMIT) -> bool:
    """Whether the rest of a body is read to keep its connection: its known rest is under
    `limit` (Go: `unreadDataSizeLocked() < maxPostHandlerReadBytes`), or unknown."""
    return content_length is None or content_length - received < limit


async def discard(content: StreamReader, limit: int) -> bool:
    """Read and drop up to `limit` bytes of a body (never inflated: the listener does not
    decode); True if the body ended within them."""
    dropped = 0
    while dropped <= limit:
        chunk = await content.readany()
        if not chunk:
            return content.is_eof()
        dropped += len(chunk)
    return False


class HoldingTransport(asyncio.Transport):
    """A connection's TLS transport as aiohttp's request handler sees it: every call goes
    through, but a close that `holds()` says to hold does not start a TLS shutdown (the
    connection resets it after the answer, unread)."""

    def __init__(self, tls: asyncio.Transport, holds: Callable[[], bool]) -> None:
        super().__init__()
        self._tls, self._holds = tls, holds
        self._held = False

    def close(self) -> None:
        if self._holds():
            self._held = True
            return
        self._tls.close()

    def is_closing(self) -> bool:
        return self._held or self._tls.is_closing()

    def abort(self) -> None:
        self._tls.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._tls.writelines(list_of_data)

    def write_eof(self) -> None:
        self._tls.write_eof()

    def can_write_eof(self) -> bool:
        return self._tls.can_write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._tls.pause_reading()

    def resume_reading(self) -> None:
        self._tls.resume_reading()

    def is_reading(self) -> bool:
        return self._tls.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._tls.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls.get_protocol()
