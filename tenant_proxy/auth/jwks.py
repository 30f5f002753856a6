"""An issuer's signing keys: discovery, JWKS fetched with aiohttp, cached and rate-limited.

Never PyJWT's PyJWKClient: it fetches with urllib and blocks the event loop on every unknown
`kid`. Here an unknown `kid` triggers at most one fetch per `min_refetch_interval` (so a flood of
random kids costs the issuer one request per interval), concurrent lookups share one fetch, keys
are refreshed every `refresh_interval` in the background, and when the issuer is down the keys
already cached keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

log = logging.getLogger(__name__)

_MAX_DOCUMENT_BYTES = 1 << 20
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
# The key types asymmetric JWS algorithms use; "oct" (HMAC secrets) is never loaded.
_KEY_TYPES = frozenset({"RSA", "EC"})


@dataclass(frozen=True)
class SigningKey:
    """One public key of a JWKS."""

    kid: str | None
    kty: str
    key: Any
    """The `cryptography` public key object, as PyJWT verifies with."""


class JWKSError(Exception):
    """The issuer's discovery document or JWKS could not be fetched or read."""


def parse_jwks(document: Mapping[str, Any]) -> tuple[SigningKey, ...]:
    """The usable signature keys of a JWKS document; unusable entries are skipped."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JWKSError("JWKS has no keys list")
    parsed = []
    for entry in keys:
        key = _parse_key(entry)
        if key is not None:
            parsed.append(key)
    return tuple(parsed)


def _parse_key(entry: object) -> SigningKey | None:
    if not isinstance(entry, dict) or entry.get("kty") not in _KEY_TYPES:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(entry).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    kid = entry.get("kid")
    return SigningKey(kid=kid if isinstance(kid, str) else None, kty=entry["kty"], key=key)


def client_tls(ca_file: str | None) -> ssl.SSLContext:
    """TLS for talking to an issuer: system roots, or only `ca_file` when given."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class JWKSCache:
    """One issuer's signing keys, via `<issuer>/.well-known/openid-configuration` or a file."""

    def __init__(
        self,
        issuer_url: str,
        *,
        jwks_file: str | None = None,
        ca_file: str | None = None,
        refresh_interval: float = 300,
        min_refetch_interval: float = 10,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer_url = issuer_url.rstrip("/")
        self._jwks_file = Path(jwks_file) if jwks_file else None
        self._ssl = client_tls(ca_file)
        self._refresh_interval = refresh_interval
        self._min_refetch_interval = min_refetch_interval
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._keys: tuple[SigningKey, ...] = ()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._background: asyncio.Task[None] | None = None

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """The keys cached now."""
        return self._keys

    async def candidates(self, kid: str | None, kty: str) -> tuple[SigningKey, ...]:
        """Keys that may have signed a token with this `kid` and key type, fetching if needed."""
        self._refresh_if_stale()
        found = self._matching(kid, kty)
        if not found and self._may_refetch():
            with contextlib.suppress(JWKSError):  # already logged; the caller refuses the token
                await self._fetch_once()
            found = self._matching(kid, kty)
        return found

    async def close(self) -> None:
        """Stop background refreshes and close the session this cache created."""
        for task in (self._background, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _matching(self, kid: str | None, kty: str) -> tuple[SigningKey, ...]:
        return tuple(k for k in self._keys if k.kty == kty and (kid is None or k.kid == kid))

    def _may_refetch(self) -> bool:
        if self._inflight is not None and not self._inflight.done():
            return True  # joining a fetch under way costs the issuer nothing
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._min_refetch_interval
        )

    def _refresh_if_stale(self) -> None:
        if self._fetched_at is None and self._attempted_at is None:
            return  # the first lookup fetches in the foreground
        since = self._clock() - (self._fetched_at or self._attempted_at or 0.0)
        busy = self._background is not None and not self._background.done()
        if since >= self._refresh_interval and not busy and self._may_refetch():
            self._background = asyncio.create_task(self._fetch_quietly())

    async def _fetch_quietly(self) -> None:
        with contextlib.suppress(JWKSError):  # already logged; cached keys keep serving
            await self._fetch_once()

    async def _fetch_once(self) -> None:
        if self._inflight is None or self._inflight.done():
            self._attempted_at = self._clock()
            self._inflight = asyncio.create_task(self._fetch())
            self._inflight.add_done_callback(_retrieve)
        # shield: one waiter's cancellation (its client went away) must not abort the fetch
        await asyncio.shield(self._inflight)

    async def _fetch(self) -> None:
        try:
            document = await self._load_document()
            keys = parse_jwks(document)
        except (JWKSError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
            log.warning("JWKS fetch for %s failed: %s", self._issuer_url, err)
            raise JWKSError(f"JWKS fetch failed: {type(err).__name__}") from err
        if not keys:
            log.warning(
                "JWKS for %s holds no usable keys; keeping the cached ones", self._issuer_url
            )
            return
        self._keys = keys
        self._fetched_at = self._clock()

    async def _load_document(self) -> Mapping[str, Any]:
        if self._jwks_file is not None:
            return _as_object(json.loads(self._jwks_file.read_bytes()))
        discovery = await self._get_json(f"{self._issuer_url}/.well-known/openid-configuration")
        if str(discovery.get("issuer", "")).rstrip("/") != self._issuer_url:
            raise JWKSError("discovery document names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise JWKSError("discovery document has no jwks_uri")
        return await self._get_json(jwks_uri)

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        session = self._client()
        async with session.get(url, ssl=self._ssl, allow_redirects=False) as resp:
            if resp.status != 200:
                raise JWKSError(f"{url} answered {resp.status}")
            body = await resp.content.read(_MAX_DOCUMENT_BYTES + 1)
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise JWKSError(f"{url} answered more than {_MAX_DOCUMENT_BYTES} bytes")
        return _as_object(json.loads(body))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_FETCH_TIMEOUT)
        return self._session


def _retrieve(task: asyncio.Task[None]) -> None:
    # Mark the outcome as seen: when every waiter was cancelled, nobody else will.
    if not task.cancelled():
        task.exception()


def _as_object(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise JWKSError("expected a JSON object")
    return value
