"""A request aiohttp cannot read: answered as a Status, logged without the bytes it quoted.

aiohttp answers a request head it cannot parse (a line or header field over the limits, too many
fields, a control character in a header value, a malformed request line or URL) with a
plain-text 400 that quotes the offending bytes, and logs the same bytes at ERROR with a
traceback. An Authorization header with one stray byte put its bearer token in the proxy's log
(and a 70 KiB one its first 100 bytes). Here the answer is a Status, which kubectl and client-go
print (`Error from server (BadRequest): ...`), saying what was wrong in words of its own, never
with the client's bytes; the log line says the same and carries no traceback.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from tenant_proxy.status import bad_request, encode

log = logging.getLogger("tenant_proxy.edge")

# aiohttp's own messages that quote nothing the client sent.
_FIXED_MESSAGES = frozenset({"Too many headers received", "Too many trailers received"})


def unreadable(exc: HttpProcessingError) -> str:
    """What was wrong with the request, in words that quote none of its bytes."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "the limit"
        return f"the request line or a header field is longer than {limit} bytes"
    if isinstance(exc, BadStatusLine):  # BadHttpMethod too
        return "the request line is malformed"
    if isinstance(exc, InvalidURLError):
        return "the request URL is malformed"
    if isinstance(exc, InvalidHeader):
        return "a header field is malformed"
    if isinstance(exc, PayloadEncodingError):
        return "the request body is malformed"
    if exc.message in _FIXED_MESSAGES:
        return f"the request head is refused: {exc.message.lower()}"
    if isinstance(exc, BadHttpMessage):
        return "the request head is malformed"
    return "the request could not be read"


class StatusOnUnreadable(RequestHandler):
    """aiohttp's request handler, but for what it answers to a request it cannot read."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            # Not the client's bytes (the proxy's own failure, logged with its traceback), or
            # an answer already begun: aiohttp's way.
            return super().handle_error(request, status, exc, message)
        why = unreadable(exc)
        log.info(
            "request refused unread",
            extra={"fields": {"code": 400, "reason": why, "source": request.remote or ""}},
        )
        body = encode(bad_request(why))
        response = web.Response(status=400, body=body, content_type="application/json")
        response.force_close()
        return response


def quote_free_server_log() -> None:
    """Put `QuoteFree` on aiohttp's server logger, once: listeners not behind the edge
    (metrics) keep aiohttp's own request handler and its log line."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuoteFree) for f in server_log.filters):
        server_log.addFilter(QuoteFree())


class QuoteFree(logging.Filter):
    """For aiohttp's own log lines: a request it could not read is logged in the words of
    `unreadable`, without the bytes or traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = f"request refused unread: {unreadable(exc)}", ()
            record.exc_info, record.exc_text = None, None
        return True
