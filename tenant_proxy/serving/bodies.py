"""Upstream answers a filtered read judges: read whole (bounded in size and time), split a
slice at a time, and the proxy's own answer made of them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.lists import NotAList
from tenant_proxy.filtering.pages import Page, Splitting
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.requestinfo import Query
from tenant_proxy.serving import passthrough
from tenant_proxy.tenancy.ownership import Owns

# An API server writes a list's metadata (and its continue token) before the items.
HEAD_BYTES = 4096
# Entries judged between two turns of the event loop (a few milliseconds' work).
_SPLIT_SLICE = 1000


@dataclass(frozen=True)
class BodyLimits:
    """How much of an upstream answer the proxy reads, and for how long."""

    max_bytes: int
    timeout: float


async def read_bounded(
    resp: aiohttp.ClientResponse,
    limits: BodyLimits,
    on_head: Callable[[bytes], None] | None = None,
) -> bytes:
    """The whole body, bounded in size and time; `on_head` sees its first few KiB as soon as
    they came. A body that breaks off or stalls is the API server's failure (502/504),
    answered as a Status, never half a list."""
    if resp.content_length is not None and resp.content_length > limits.max_bytes:
        raise status.bad_gateway("the API server's answer is larger than the proxy reads")
    # Chunks as they arrive, joined once: a growing buffer would copy a large list twice.
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.timeout):
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
                size += len(chunk)
                if size > limits.max_bytes:
                    raise status.bad_gateway(
                        "the API server's answer is larger than the proxy reads"
                    )
                if on_head is not None and (size >= HEAD_BYTES or resp.content.at_eof()):
                    on_head(b"".join(chunks)[:HEAD_BYTES])
                    on_head = None
    except TimeoutError:
        raise status.gateway_timeout("the API server's answer did not arrive in time") from None
    except aiohttp.ClientError as exc:
        raise status.bad_gateway(f"the API server's answer broke off: {exc}") from None
    if on_head is not None:
        on_head(b"".join(chunks))
    return b"".join(chunks)


async def split_page(body: bytes, owns: Owns) -> Page:
    """The page split, a slice at a time: between slices the event loop reads the page
    ahead and serves other clients (a large page is tens of milliseconds of work)."""
    try:
        with collector_paused():
            splitting = Splitting(body, owns, owns.fields)
        while not _split_some(splitting):  # noqa: ASYNC110 - yielding, not waiting
            await asyncio.sleep(0)
    except NotAList as exc:
        raise status.bad_gateway(f"unexpected list answer: {exc}") from None
    return splitting.page


def _split_some(splitting: Splitting) -> bool:
    with collector_paused():
        return splitting.step(_SPLIT_SLICE)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Decoding a large list builds hundreds of thousands of objects, and Python's cyclic GC
    would run full collections all through it (half the time of a 20,000-PV list). Nothing else
    runs during this synchronous step, and what it builds holds no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def answer(body: bytes, shape: Shape) -> web.Response:
    """The proxy's answer to a filtered read, in the form the client prefers."""
    return passthrough.json_response(body, as_yaml=shape.yaml)


def upstream_query(query: Query, shape: Shape, selector: str | None) -> str:
    """The client's query as the proxy asks it upstream: with the rule's label selector and
    the includeObject the proxy needs to judge Table rows."""
    changes: dict[str, str | None] = {}
    if selector is not None:
        changes["labelSelector"] = selector
    if shape.include_object is not None:
        changes["includeObject"] = shape.include_object
    return query.with_params(changes) if changes else query.raw
