"""Requests the proxy cannot read: a Status back, and none of their bytes in the answer or log.

aiohttp quotes the bytes it could not parse, in its plain-text 400 and in an ERROR log line with
a traceback; a bearer token with one stray byte (or a header over the limit, of which it quotes
the first 100 bytes) went to the proxy's log that way. Each case here carries a secret where an
attacker or a broken client would put one, and checks the answer is a Status that quotes none
of it, and that the proxy's log (a real `tenant-proxy serve`, its JSON lines) never holds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from attack_support import World, host_header, probe, send_raw
from e2e.core_support import host_port

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e]

CONFIGMAPS = "/api/v1/namespaces/team-a-dev/configmaps"


@dataclass(frozen=True)
class Unreadable:
    id: str
    head: Callable[[str, str], bytes]  # (host, secret) -> the bytes sent
    message: str


CASES = [
    Unreadable(
        "a control byte in a bearer token",
        lambda host, secret: (
            f"GET {CONFIGMAPS} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {secret}\x01tail\r\n\r\n"
        ).encode(),
        "the request head is malformed",
    ),
    Unreadable(
        "a bearer token over the header limit",
        lambda host, secret: (
            f"GET {CONFIGMAPS} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {secret}{'e' * 70_000}\r\n\r\n"
        ).encode(),
        "the request line or a header field is longer than 65536 bytes",
    ),
    Unreadable(
        "a secret in a query with a DEL byte",
        lambda host, secret: (
            f"GET {CONFIGMAPS}?token={secret}\x7f HTTP/1.1\r\nHost: {host}\r\n\r\n"
        ).encode(),
        "the request URL is malformed",
    ),
    Unreadable(
        "a secret in a request line over the limit",
        lambda host, secret: (
            f"GET {CONFIGMAPS}?token={secret}&x={'a' * 20_000} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        ).encode(),
        "the request line or a header field is longer than 16384 bytes",
    ),
    Unreadable(
        "a secret in a header name",
        lambda host, secret: (
            f"GET {CONFIGMAPS} HTTP/1.1\r\nHost: {host}\r\nX-{secret}(: v\r\n\r\n"
        ).encode(),
        "the request head is malformed",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_an_unreadable_request_is_a_status_that_quotes_nothing_and_logs_nothing_of_it(
    world: World, case: Unreadable
) -> None:
    secret = "s3cr3t" + os.urandom(8).hex()
    answers = await send_raw(world, case.head(host_header(world), secret))
    assert len(answers) == 1
    (answer,) = answers
    assert answer.status == 400
    assert answer.header("Content-Type") == "application/json"
    assert answer.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": case.message,
        "reason": "BadRequest",
        "code": 400,
    }
    await probe(world)  # the proxy serves on; its log holds what it wrote for this case
    lines = [orjson.loads(line) for line in world.log.read_bytes().splitlines() if line]
    assert secret.encode() not in world.log.read_bytes()
    assert any(
        line.get("msg") == "request refused unread" and line.get("reason") == case.message
        for line in lines
    )


async def test_a_plain_listeners_log_of_an_unreadable_request_quotes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The metrics listener is not behind the edge: aiohttp's own handler answers there, and
    # the filter the proxy puts on aiohttp's logger rewrites its log line.
    demo = Demo(tmp_path)
    await demo.start()
    try:
        assert demo.proxy is not None
        host, port = host_port(demo.proxy.metrics_url)
        secret = "s3cr3t" + os.urandom(8).hex()
        with caplog.at_level(logging.INFO):
            reader, writer = await asyncio.open_connection(host, port)
            head = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\x01\r\n"
            writer.write(head.encode() + b"\r\n")
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
    finally:
        await demo.stop()
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400"), answer
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.getMessage() for r in refused] == [
        "request refused unread: the request head is malformed"
    ]
    assert refused[0].exc_info is None
    assert secret not in caplog.text
