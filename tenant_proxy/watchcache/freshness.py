"""The API server's current resourceVersion, which a consistent read from the cache must reach.

kube-apiserver >= 1.31 serves a consistent list from its watch cache once the cache has caught
up with the current revision (staging/src/k8s.io/apiserver/pkg/storage/cacher: the cacher's
`getCurrentResourceVersionFromStorage` reads it with a `limit=1` list of the resource, then
`waitUntilFreshAndBlock`). The proxy does the same against the API server. Concurrent readers
share one read, as the cacher batches its progress requests: a read serves every caller that
asked before it began; a caller that asks while one is on its way waits for the next, begun
when that one returns, so no answer is older than the request it serves, and a crowd of lists
costs at most one read in flight per resource.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from tenant_proxy import status
from tenant_proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("tenant_proxy.watchcache")

Found = int | status.ApiError | None
"""A resourceVersion; a refusal meant for the client; or None: not to be had (the read then
goes upstream and meets the failure there)."""


class CurrentVersions:
    """Reads of the current resourceVersion, shared by the callers that asked before each."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._next: dict[str, asyncio.Future[Found]] = {}
        self._sending: set[str] = set()
        self.reads = 0

    async def current(self, path: str) -> int | None:
        """The resourceVersion of a consistent read of `path` sent after this call began."""
        return await self.answer(self.ask(path))

    def ask(self, path: str) -> asyncio.Future[Found]:
        """What `current` awaits, asked at once: a read sent after this call, started now
        when none is on its way (its request goes out as soon as the caller yields), so the
        caller may work while it travels. Await it with `answer`."""
        waiting = self._next.get(path)
        if waiting is None:
            waiting = self._next[path] = asyncio.get_running_loop().create_future()
            if path not in self._sending:
                self._send(path)
        return waiting

    @staticmethod
    async def answer(asked: asyncio.Future[Found]) -> int | None:
        """The version `ask` brought; a refusal meant for the client is raised."""
        found = await asyncio.shield(asked)
        if isinstance(found, status.ApiError):
            raise found
        return found

    def _send(self, path: str) -> None:
        self._sending.add(path)
        self.reads += 1
        read = asyncio.ensure_future(self._read(path))

        def done(task: asyncio.Task[None]) -> None:
            self._sending.discard(path)
            if not task.cancelled() and path in self._next:
                self._send(path)  # for those who asked while this one was on its way

        read.add_done_callback(done)

    async def _read(self, path: str) -> None:
        # Everyone who asked before this read began shares it; later askers wait for the next.
        answer = self._next.pop(path)
        found: Found = None
        try:
            found = await self._fetch(path)
        except Exception as exc:
            log.warning("reading the current version of %s failed: %r", path, exc)
        finally:
            if not answer.done():
                answer.set_result(found)

    async def _fetch(self, path: str) -> Found:
        try:
            resp = await self._upstream.send(
                "GET", self._upstream.url(path, "limit=1"), [("Accept", "application/json")]
            )
            async with resp:
                body = await resp.read()
        except (UpstreamError, aiohttp.ClientError, TimeoutError):
            return None  # broke off or stalled: the upstream read meets it and says so
        if resp.status in _RELAYED:
            return _refusal(resp.status, body, resp.headers.get("Retry-After"))
        if resp.status != 200:
            return None
        try:
            rv = (orjson.loads(body).get("metadata") or {}).get("resourceVersion")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return int(rv) if isinstance(rv, str) and rv.isdigit() else None


# What the API server answers when it sheds load: the client would get it direct too.
_RELAYED = frozenset({429, 503})


def _refusal(code: int, body: bytes, retry_after: str | None) -> status.ApiError:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = {}
    reason = str(doc.get("reason") or ("TooManyRequests" if code == 429 else "ServiceUnavailable"))
    message = str(doc.get("message") or "the API server is busy")
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return status.ApiError(code, reason, message, doc.get("details"), headers)
