"""SPDY/3.1 framing, as much of it as port-forward uses. Pure: bytes in, frames out.

kubectl and client-go speak SPDY through moby/spdystream (framing from Go's old
`code.google.com/p/go.net/spdy`), over a raw `Upgrade: SPDY/3.1` connection or tunnelled in
WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`, client-go's tunneling dialer). That
implementation has no flow control: WINDOW_UPDATE and SETTINGS are read and ignored, as here.

Frames (SPDY/3 draft, section 2.2): a control frame starts with the control bit, version 3 and
a 16-bit type; a data frame with the 31-bit stream id. Both then carry 8 bits of flags and a
24-bit length. Header blocks are zlib-compressed with one context per direction for the whole
connection, primed with the dictionary the draft defines (section 2.6.10.1).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
FLAG_FIN = 0x01
MAX_DATA = (1 << 24) - 1
# RST_STREAM status codes used here.
PROTOCOL_ERROR, INVALID_STREAM, CANCEL = 1, 2, 5

_WORDS = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The header compression dictionary: each word with a 32-bit length, then the tail verbatim
# (1,423 bytes, as spdystream's `headerDictionary`: tests/emulator/test_spdy.py pins its digest).
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SpdyError(Exception):
    """Bytes that are not SPDY/3 (the connection cannot go on)."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_stream_id: int
    status: int


@dataclass(frozen=True)
class Ignored:
    """SETTINGS, WINDOW_UPDATE, HEADERS: read and dropped (spdystream sends no flow control)."""

    frame_type: int


Frame = SynStream | SynReply | Data | RstStream | Ping | GoAway | Ignored


def _encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(raw_name)), raw_name]
        out += [struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(out)


def _decode_headers(block: bytes) -> dict[str, str]:
    try:
        (count,), at = struct.unpack_from(">I", block), 4
        headers: dict[str, str] = {}
        for _ in range(count):
            (size,) = struct.unpack_from(">I", block, at)
            name = block[at + 4 : at + 4 + size].decode()
            at += 4 + size
            (size,) = struct.unpack_from(">I", block, at)
            # Several values of one header are joined by NUL: the first is the one used here.
            headers[name] = block[at + 4 : at + 4 + size].decode().split("\x00", 1)[0]
            at += 4 + size
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"malformed header block: {exc}") from None
    return headers


class FrameReader:
    """Frames out of a byte stream fed in pieces of any size."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if len(self._buffer) < 8 + length:
                break
            head, body = bytes(self._buffer[:8]), bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            frames.append(self._frame(head, body))
        return frames

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            return _decode_headers(self._inflate.decompress(block))
        except zlib.error as exc:
            raise SpdyError(f"header block does not inflate: {exc}") from None

    def _frame(self, head: bytes, body: bytes) -> Frame:
        word, flags = int.from_bytes(head[:4], "big"), head[4]
        fin = bool(flags & FLAG_FIN)
        if not word & 0x8000_0000:
            return Data(word & 0x7FFF_FFFF, body, fin)
        version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        if kind in (SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY) and len(body) < 4:
            raise SpdyError(f"control frame {kind} too short")
        first = int.from_bytes(body[:4], "big") & 0x7FFF_FFFF
        if kind == SYN_STREAM:
            return SynStream(first, self._headers(body[10:]), fin)
        if kind == SYN_REPLY:
            return SynReply(first, self._headers(body[4:]), fin)
        if kind == RST_STREAM:
            return RstStream(first, int.from_bytes(body[4:8], "big"))
        if kind == PING:
            return Ping(int.from_bytes(body[:4], "big"))
        if kind == GOAWAY:
            return GoAway(first, int.from_bytes(body[4:8], "big"))
        return Ignored(kind)


class FrameWriter:
    """Frames to bytes; keeps the connection's header compression context."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = _encode_headers(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        word = 0x8000_0000 | (VERSION << 16) | kind
        return struct.pack(">IB", word, flags) + len(body).to_bytes(3, "big") + body

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        # associated stream 0, priority 0, slot 0
        body = struct.pack(">IIH", stream_id, 0, 0) + self._block(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    def syn_reply(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        body = struct.pack(">I", stream_id) + self._block(headers)
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        """One or more DATA frames (a frame holds at most 16 MiB); FIN on the last."""
        pieces = [data[i : i + MAX_DATA] for i in range(0, len(data), MAX_DATA)] or [b""]
        return b"".join(
            struct.pack(">IB", stream_id & 0x7FFF_FFFF, FLAG_FIN if fin and last else 0)
            + len(piece).to_bytes(3, "big")
            + piece
            for last, piece in ((i == len(pieces) - 1, p) for i, p in enumerate(pieces))
        )
