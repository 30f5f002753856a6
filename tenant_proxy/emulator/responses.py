"""HTTP helpers of the emulator's handlers: JSON answers, request bodies, common headers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tenant_proxy.emulator import errors, protobuf
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.objects import parse_json

MAX_BODY = 3 * 1024 * 1024


def json_response(
    body: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type=content_type
    )


def decode_body(request: web.Request, body: bytes) -> Any:
    """A request body as JSON: JSON or YAML, or one of the protobuf kinds kubectl sends."""
    if request.headers.get("Content-Type", "").startswith(protobuf.MEDIA_TYPE):
        try:
            return protobuf.decode(body)
        except protobuf.ProtobufError as exc:
            raise StatusError(415, "UnsupportedMediaType", str(exc), {}) from None
    return parse_json(body)


def status_response(err: StatusError) -> web.Response:
    return json_response(err.status(), err.code, err.headers)


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    # A caller's Audit-Id is kept and echoed, else one is made (apiserver's WithAuditID filter).
    response.headers.setdefault("Audit-Id", request.headers.get("Audit-Id") or str(uuid.uuid4()))
    response.headers.setdefault("Cache-Control", "no-cache, private")


async def cut_off(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Half of `response`'s body, then the connection dropped."""
    body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
    cut = web.StreamResponse(status=response.status, headers=response.headers)
    cut.headers.pop("Content-Length", None)
    await cut.prepare(request)
    await cut.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return cut
