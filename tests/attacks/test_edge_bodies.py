"""A compressed request body is refused unread, and never stalls anybody else.

kube-apiserver does not decode a request's Content-Encoding; the proxy refuses one with 415
before reading the body (and its listener never inflates bodies). A gzip bomb (3 MiB that
inflate to 3 GiB) used to be inflated on the event loop while every other tenant waited.
What becomes of the rest of a refused body is Go's rule (tenant_proxy/refused_bodies.py): under
256 KiB it is read and dropped and the connection kept; longer, it is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import orjson
import pytest
from edge_support import GENEROUS, EdgeDemo, closed_by_peer, edge_demo, gzip_bomb, read_response

from tenant_proxy import status
from tenant_proxy.serving.passthrough import refuse_encoded_body

CONFIGMAPS = "/api/v1/namespaces/team-a-dev/configmaps"
HELD = 64 * 1024  # the bomb's tail, held back by its client until the probes are answered
PROBES = 5


def post_head(length: int, encoding: str) -> bytes:
    return (
        f"POST {CONFIGMAPS} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: {encoding}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def probe(demo: EdgeDemo) -> list[int]:
    """Bob's namespaces, PROBES times over one kept-alive connection: the codes."""
    reader, writer = await demo.connect(demo.bob())
    codes = []
    for _ in range(PROBES):
        writer.write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: proxy\r\n\r\n")
        codes.append((await read_response(reader))[0])
    writer.close()
    return codes


async def test_gzip_bomb_is_refused_while_another_tenant_is_served(tmp_path: Path) -> None:
    bomb = gzip_bomb(3 * 1024)
    async with edge_demo(tmp_path) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(post_head(len(bomb), "gzip"))
        writer.write(bomb[:-HELD])  # not drained: it goes as fast as the proxy reads it
        code, body = await read_response(reader)
        assert code == 415
        assert orjson.loads(body)["reason"] == "UnsupportedMediaType"
        # While the bomb is still in flight (its tail held back), bob is answered.
        assert await probe(demo) == [200] * PROBES
        # And the proxy did not wait for the rest of a body it refused: the connection ends.
        assert await closed_by_peer(reader)
        writer.close()


@pytest.mark.parametrize("encoding", ["deflate", "br", "zstd", "gzip, identity", "GZIP"])
async def test_any_content_encoding_is_refused(tmp_path: Path, encoding: str) -> None:
    body = b'{"metadata":{"name":"x"}}'
    async with edge_demo(tmp_path) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(post_head(len(body), encoding) + body)
        code, answer = await read_response(reader)
        assert (code, orjson.loads(answer)["reason"]) == (415, "UnsupportedMediaType")
        writer.close()


async def test_identity_encoding_is_passed_through(tmp_path: Path) -> None:
    body = b'{"metadata":{"name":"plain"}}'
    async with edge_demo(tmp_path) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(post_head(len(body), "identity") + body)
        code, answer = await read_response(reader)
        assert code == 201, answer
        writer.close()


def test_refusal_reads_every_listed_coding() -> None:
    refuse_encoded_body([])
    refuse_encoded_body(["identity"])
    refuse_encoded_body(["", " Identity "])
    for codings in (["gzip"], ["identity", "gzip"], ["identity, br"]):
        with pytest.raises(status.ApiError) as refused:
            refuse_encoded_body(codings)
        assert refused.value.code == 415


async def test_bodyless_request_with_an_encoding_header_is_served(tmp_path: Path) -> None:
    """No body, nothing to refuse: as kube-apiserver, the header is ignored."""
    async with edge_demo(tmp_path) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(
            b"GET /api/v1/namespaces/team-a-dev/pods HTTP/1.1\r\nHost: proxy\r\n"
            b"Content-Encoding: gzip\r\n\r\n"
        )
        code, _ = await read_response(reader)
        assert code == 200
        writer.close()


async def read_head(reader: asyncio.StreamReader) -> str:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS)
    return head.decode("latin-1").lower()


async def send_until_stopped(writer: asyncio.StreamWriter, total: int) -> int:
    """Send `total` bytes of body in 64 KiB pieces; how many the proxy took before it reset
    the connection (all of them if it read them all)."""
    piece, sent = bytes(64 * 1024), 0
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
    return sent


async def test_the_rest_of_a_long_refused_body_is_never_read(tmp_path: Path) -> None:
    """Not even decrypted: the proxy stops reading, answers `Connection: close`, and resets
    the connection, however fast the client goes on sending (a TLS close would read on)."""
    total = 64 * 1024 * 1024  # more than any socket buffers between client and proxy
    async with edge_demo(tmp_path, max_body_bytes=2 * total) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(post_head(total, "gzip"))
        sending = asyncio.create_task(send_until_stopped(writer, total))
        head = await read_head(reader)
        assert head.startswith("http/1.1 415")
        assert "connection: close" in head
        sent = await asyncio.wait_for(sending, GENEROUS)
        assert sent < total // 4, f"the proxy took {sent} bytes of a body it refused"
        assert await closed_by_peer(reader)
        writer.close()


async def test_a_body_refused_at_expect_is_not_read_when_sent_anyway(tmp_path: Path) -> None:
    """413 instead of `100 Continue`; a client that sends the body all the same is not read."""
    total = 64 * 1024 * 1024
    async with edge_demo(tmp_path, max_body_bytes=1024 * 1024) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(
            f"POST {CONFIGMAPS} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            f"Expect: 100-continue\r\nContent-Length: {total}\r\n\r\n".encode()
        )
        head = await read_head(reader)
        assert head.startswith("http/1.1 413")
        sent = await asyncio.wait_for(send_until_stopped(writer, total), GENEROUS)
        assert sent < total // 4, f"the proxy took {sent} bytes of a body it refused"
        assert await closed_by_peer(reader)
        writer.close()


async def test_a_short_refused_body_is_dropped_and_the_connection_kept(tmp_path: Path) -> None:
    """Under 256 KiB, the rest is read (never inflated) and thrown away: the client's next
    request goes on the same connection, with no new handshake."""
    body = bytes(200 * 1024)
    async with edge_demo(tmp_path) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(post_head(len(body), "gzip"))
        head = await read_head(reader)  # answered before the body is sent
        assert head.startswith("http/1.1 415")
        assert "connection: close" not in head
        await reader.readexactly(int(head.split("content-length:")[1].split()[0]))
        writer.write(body)
        writer.write(b"GET /api/v1/namespaces/team-a-dev/configmaps HTTP/1.1\r\nHost: p\r\n\r\n")
        code, _ = await read_response(reader)
        assert code == 200
        writer.close()
