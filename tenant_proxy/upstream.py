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
import contextlib
import functools
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tenant_proxy import status
from tenant_proxy.config import UpstreamSettings
from tenant_proxy.kubeconfig import Credentials, read_credentials
from tenant_proxy.requestinfo import classify
from tenant_proxy.tenancy.model import GroupResource

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
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


@dataclass(frozen=True)
class _Material:
    server: str
    ca_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None
    token: str | None
    token_file: Path | None
    insecure: bool


def _in_cluster() -> _Material:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise UpstreamError("in_cluster is set but KUBERNETES_SERVICE_HOST is not")
    host = f"[{host}]" if ":" in host else host
    return _Material(
        server=f"https://{host}:{port}",
        ca_pem=(IN_CLUSTER_DIR / "ca.crt").read_bytes(),
        cert_pem=None,
        key_pem=None,
        token=None,
        token_file=IN_CLUSTER_DIR / "token",
        insecure=False,
    )


def _material(settings: UpstreamSettings) -> _Material:
    if settings.in_cluster:
        return _in_cluster()
    if settings.kubeconfig is not None:
        creds: Credentials = read_credentials(settings.kubeconfig, settings.context)
        return _Material(
            creds.server,
            creds.ca_pem,
            creds.client_cert_pem,
            creds.client_key_pem,
            creds.token,
            settings.token_file,
            creds.insecure,
        )
    if not settings.server:
        raise UpstreamError("upstream needs kubeconfig, in_cluster or server")

    def read(p: Path | None) -> bytes | None:
        return p.read_bytes() if p else None

    return _Material(
        settings.server.rstrip("/"),
        read(settings.ca_file),
        read(settings.client_cert_file),
        read(settings.client_key_file),
        None,
        settings.token_file,
        False,
    )


def _ssl_context(m: _Material) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=m.ca_pem.decode() if m.ca_pem else None)
    if m.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if m.cert_pem and m.key_pem:
        # The ssl module loads keys from files only: a private temp dir, removed at once.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            cert.write_bytes(m.cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(m.key_pem)
            ctx.load_cert_chain(cert, key)
    return ctx


class TokenSource:
    """The proxy's bearer token, re-read from its file so rotated ServiceAccount tokens work."""

    def __init__(self, token: str | None, path: Path | None, max_age: float = 60.0) -> None:
        self._token, self._path, self._max_age = token, path, max_age
        self._read_at = -max_age

    def header(self) -> str | None:
        if self._path is not None:
            now = asyncio.get_running_loop().time()
            if now - self._read_at >= self._max_age:
                with contextlib.suppress(OSError):
                    self._token = self._path.read_text().strip()
                self._read_at = now
        return f"Bearer {self._token}" if self._token else None


class Upstream:
    """kube-apiserver as seen with the proxy's own credentials."""

    def __init__(self, settings: UpstreamSettings, observe: Observe | None = None) -> None:
        material = _material(settings)
        self._observe = observe
        self.base = URL(material.server)
        self._settings = settings
        self._ssl = _ssl_context(material)
        self._tokens = TokenSource(material.token, material.token_file)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, ssl=self._ssl, enable_cleanup_closed=True
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

    def own_headers(self) -> list[tuple[str, str]]:
        """The proxy's own Authorization (client certificates need none)."""
        header = self._tokens.header()
        return [("Authorization", header)] if header else []

    async def send(
        self,
        method: str,
        url: URL,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request; the response's body is left for the caller to stream.

        Only the time to the response head is bounded: watch and log bodies may stream for hours.
        """
        started = time.monotonic()
        try:
            resp = await self._send(method, url, headers, body)
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

    async def _send(
        self,
        method: str,
        url: URL,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> aiohttp.ClientResponse:
        attempts = 1 + (self._settings.connect_retries if method in IDEMPOTENT and not body else 0)
        all_headers = [*headers, *self.own_headers()]
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
