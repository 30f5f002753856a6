"""A compressed request body is refused unread, and never stalls anybody else.

kube-apiserver does not decode a request's Content-Encoding; the proxy refuses one with 415
before reading the body (and its listener never inflates bodies). A gzip bomb (3 MiB that
inflate to 3 GiB) used to be inflated on the event loop while every other tenant waited.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from edge_support import EdgeDemo, closed_by_peer, edge_demo, gzip_bomb, read_response

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
