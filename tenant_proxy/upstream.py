"""The one client session to kube-apiserver, with the proxy's own credentials.

aiohttp's client defaults are wrong for a Kubernetes proxy, each deliberately overridden here:
- no total timeout (300 s would cut every watch): connect and first-byte timeouts instead;
- no connection limit (the 101st watch would stall behind the first 100);
- no automatic decompression (pass-through relays the bytes it got; a 48 KB gzip body
  can inflate to 50 MB) and no automatic Accept-Encoding/User-Agent/Content-Type;
- redirects never followed (they would carry impersonation headers to another host).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tenant_proxy import status
from tenant_proxy.config import UpstreamSettings
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.requestinfo import classify
from tenant_proxy.upstream_credentials import UpstreamCredentials

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SKIP_AUTO = ("Accept-Encoding", "User-Agent", "Content-Type")

Observe = Callable[[str, str, str, float], None]
"""Told of each request sent: verb, resource, code ("error" when none came) and seconds."""


@functools.lru_cache(maxsize=4096)
def _labels(method: str, path: str, watch: bool) -> tuple[str, str]:
    """Verb and resource of a request to the API server, for its duration metric (cached: the
    same few paths recur, and only `watch` of the query changes the verb)."""
    try:
        info = classify(method, path, "watch=1" if watch else "")
    except status.ApiError:
        return "other", "-"
    resource = str(GroupResource(info.api_group, info.resource)) if info.is_resource else "-"
    return info.verb, resource


class UpstreamError(Exception):
    """The API server could not be reached or did not answer in time."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class Upstream:
    """kube-apiserver as seen with the proxy's own credentials."""

    def __init__(self, settings: UpstreamSettings, observe: Observe | None = None) -> None:
        self.credentials = UpstreamCredentials(settings)
        self.base = URL(self.credentials.server)
        self._observe = observe
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Load the proxy's credentials (an exec plugin runs here): `CredentialError` if they
        cannot be used. Otherwise the first request does it."""
        await self.credentials.load()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            tls = self.credentials.ssl_context
            if tls is None:
                raise RuntimeError("the upstream credentials are not loaded (await start())")
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, ssl=tls, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=_SKIP_AUTO,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._settings.connect_timeout_seconds, sock_read=None
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, raw_path: str, raw_query: str = "") -> URL:
        """The upstream URL for a path exactly as classified: never re-normalised."""
        target = raw_path + (f"?{raw_query}" if raw_query else "")
        return URL(str(self.base) + target, encoded=True)

    async def send(
        self,
        method: str,
        url: URL,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request; the response's body is left for the caller to stream.

        Only the time to the response head is bounded: watch and log bodies may stream for hours.
        A 401 means the proxy's own credential was refused (callers are impersonated, never
        authenticated upstream): it is renewed once and a request whose body can be sent again
        is retried with the new one.
        """
        started = time.monotonic()
        try:
            resp = await self._authorized(method, url, headers, body)
        except UpstreamError:
            self._timed(method, url, "error", started)
            raise
        self._timed(method, url, str(resp.status), started)
        return resp

    def _timed(self, method: str, url: URL, code: str, started: float) -> None:
        if self._observe is None:
            return
        seconds = time.monotonic() - started
        path = url.raw_path[len(self.base.raw_path.rstrip("/")) :]
        watch = url.query.get("watch", "").lower() in ("1", "true")
        verb, resource = _labels(method, path, watch)
        self._observe(verb, resource, code, seconds)

    async def _authorized(
        self,
        method: str,
        url: URL,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> aiohttp.ClientResponse:
        authorization = await self.credentials.authorization()
        resp = await self._send(method, url, headers, body, authorization)
        if resp.status != 401:
            return resp
        renewed = await self.credentials.renew(authorization)
        if not renewed or not (body is None or isinstance(body, bytes)):
            return resp
        resp.close()
        return await self._send(method, url, headers, body, await self.credentials.authorization())

    async def _send(
        self,
        method: str,
        url: URL,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
        authorization: str | None,
    ) -> aiohttp.ClientResponse:
        attempts = 1 + (self._settings.connect_retries if method in IDEMPOTENT and not body else 0)
        own = [("Authorization", authorization)] if authorization else []
        all_headers = [*headers, *own]
        for attempt in range(attempts):
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the request completes (an informer would outlive its stop).
                async with asyncio.timeout(self._settings.response_timeout_seconds):
                    resp = await self.session.request(
                        method,
                        url,
                        headers=all_headers,
                        data=body,
                        allow_redirects=False,
                        compress=False,
                        server_hostname=self.credentials.server_hostname,
                    )
                if resp.status in REDIRECTS:
                    # Never followed, never relayed: a client following it would send its
                    # request (and a proxy its impersonation) to wherever it points.
                    resp.close()
                    raise UpstreamError(f"the API server answered a redirect ({resp.status})")
                return resp
            except aiohttp.ClientConnectorError as exc:
                if attempt + 1 == attempts:
                    raise UpstreamError(
                        f"cannot connect to the API server: {exc.os_error}"
                    ) from exc
                await asyncio.sleep(0.1 * 2**attempt)  # backoff between connect retries
            except TimeoutError as exc:
                raise UpstreamError("the API server did not answer in time", timeout=True) from exc
            except aiohttp.ClientError as exc:
                raise UpstreamError(f"API server connection failed: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    async def json_call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, Any]:
        """A small JSON request as the proxy itself (reviews, informers' helpers)."""
        data = orjson.dumps(body) if body is not None else None
        hdrs = [("Accept", "application/json"), *headers]
        if data is not None:
            hdrs.append(("Content-Type", "application/json"))
        resp = await self.send(method, self.url(path), hdrs, data)
        async with resp:
            try:
                async with asyncio.timeout(self._settings.response_timeout_seconds):
                    raw = await resp.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise UpstreamError("the API server's answer was cut") from exc
        try:
            return resp.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"the API server answered non-JSON ({resp.status})") from exc

    async def review_token(self, token: str, audiences: Sequence[str] = ()) -> dict[str, Any]:
        """A TokenReview as the proxy; returns the review's `status` (possibly unauthenticated)."""
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        status, doc = await self.json_call(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        )
        if status != 201 and status != 200:
            raise UpstreamError(f"TokenReview failed with HTTP {status}")
        result: dict[str, Any] = (doc or {}).get("status") or {}
        return result

    async def access_review(self, spec: Mapping[str, Any]) -> bool:
        """A SubjectAccessReview as the proxy: may this user do this?"""
        status, doc = await self.json_call(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        if status != 201 and status != 200:
            raise UpstreamError(f"SubjectAccessReview failed with HTTP {status}")
        return bool(((doc or {}).get("status") or {}).get("allowed"))
