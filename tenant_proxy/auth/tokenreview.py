"""Any other bearer token (e.g. ServiceAccount tokens): ask the API server with a TokenReview.

Only `status.authenticated is True` counts (capsule-proxy's CVE-2023-48312 skipped that check).
Results are cached under the token's SHA-256 (no raw token is kept): positive ones until
min(token exp, positive_ttl), negative ones negative_ttl, errors never; the cache is an LRU of
bounded size. Concurrent reviews of one token share one upstream call. Reviews that reach the
upstream are paced by a token bucket, so a flood of distinct invalid tokens costs the API server
a bounded rate; beyond it callers get ReviewRateLimited (an AuthenticationError: 401 unless the
listener maps it to 429 with Retry-After, which client-go honours).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy.auth.base import AuthenticationError, Credentials, token_digest
from tenant_proxy.identity import Identity

log = logging.getLogger(__name__)

Review = Callable[[str], Awaitable[Mapping[str, Any]]]
"""POSTs a TokenReview for a token with the proxy's own credentials; returns its `status`."""


@dataclass(frozen=True)
class TokenReviewSettings:
    """How TokenReview results are cached and paced."""

    positive_ttl: float = 60
    """Seconds an accepted token stays cached (shortened to the token's own `exp`)."""
    negative_ttl: float = 10
    """Seconds a rejected token stays cached."""
    cache_size: int = 10_000
    """Most tokens remembered (least recently used evicted first)."""
    reviews_per_second: float = 20
    """Sustained rate of reviews sent upstream (cache misses only)."""
    burst: int = 50
    """Reviews that may be sent at once before the rate applies."""
    audiences: tuple[str, ...] = ()
    """When set (and sent in the review), `status.audiences` must name one of them."""

    def __post_init__(self) -> None:
        if self.cache_size < 1 or self.burst < 1 or self.reviews_per_second <= 0:
            raise ValueError("cache_size, burst and reviews_per_second must be positive")


class ReviewRateLimited(AuthenticationError):
    """Too many reviews upstream right now; `retry_after` seconds until one is allowed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("review rate limited")
        self.retry_after = retry_after


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def identity_from_status(
    status: Mapping[str, Any], audiences: tuple[str, ...] = ()
) -> Identity | None:
    """The identity a TokenReview status vouches for; None unless authenticated is True
    (and, when `audiences` are required, the status names one of them)."""
    if status.get("authenticated") is not True:
        return None
    if audiences and not set(audiences) & set(_strings(status.get("audiences"))):
        return None
    user = status.get("user")
    if not isinstance(user, dict):
        return None
    username = user.get("username")
    if not isinstance(username, str) or not username.strip():
        return None
    extra, uid = user.get("extra"), user.get("uid")
    return Identity(
        user=username,
        groups=_strings(user.get("groups")),
        extra={k: _strings(v) for k, v in extra.items()} if isinstance(extra, dict) else {},
        uid=uid if isinstance(uid, str) else "",
        method="tokenreview",
    )


def token_expiry(token: str) -> float | None:
    """A JWT's `exp`, read unverified (only ever used to cache for less time)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Pure but for the injected clock."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> float:
        """0 when a token was taken; otherwise the seconds until one will be available."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate


@dataclass(frozen=True)
class _Entry:
    expires: float
    identity: Identity | None


class TokenReviewAuthenticator:
    """Authenticates any bearer token by TokenReview upstream; meant to be last in the chain."""

    def __init__(
        self,
        review: Review,
        settings: TokenReviewSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._review = review
        self._settings = settings or TokenReviewSettings()
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Identity | None]] = {}
        self._bucket = TokenBucket(self._settings.reviews_per_second, self._settings.burst, clock)

    async def authenticate(self, creds: Credentials) -> Identity | None:
        token = creds.bearer_token
        if not token:
            return None
        digest = token_digest(token)
        entry = self._cached(digest)
        identity = entry.identity if entry is not None else await self._reviewed(token, digest)
        if identity is None:
            raise AuthenticationError("token rejected by TokenReview")
        return identity

    def _cached(self, digest: str) -> _Entry | None:
        entry = self._cache.get(digest)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._cache[digest]
            return None
        self._cache.move_to_end(digest)
        return entry

    async def _reviewed(self, token: str, digest: str) -> Identity | None:
        task = self._inflight.get(digest)
        if task is None:
            wait = self._bucket.take()
            if wait:
                raise ReviewRateLimited(max(1, math.ceil(wait)))
            task = asyncio.create_task(self._review_and_cache(token, digest))
            self._inflight[digest] = task
            task.add_done_callback(lambda done: self._settled(digest, done))
        # shield: a caller that goes away must not cancel the review the others wait on
        return await asyncio.shield(task)

    def _settled(self, digest: str, task: asyncio.Task[Identity | None]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # seen, even when every waiter went away

    async def _review_and_cache(self, token: str, digest: str) -> Identity | None:
        try:
            status = await self._review(token)
        except Exception as err:
            # Never cached; the message names the error type only (it may quote the request).
            log.warning("TokenReview %s failed: %s", digest[:12], type(err).__name__)
            raise AuthenticationError("token review failed") from None
        identity = identity_from_status(status, self._settings.audiences)
        self._remember(digest, identity, token)
        return identity

    def _remember(self, digest: str, identity: Identity | None, token: str) -> None:
        now = self._clock()
        ttl = self._settings.negative_ttl
        if identity is not None:
            ttl = self._settings.positive_ttl
            exp = token_expiry(token)
            if exp is not None:
                ttl = min(ttl, exp - now)
        if ttl <= 0:
            return
        self._cache[digest] = _Entry(now + ttl, identity)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._settings.cache_size:
            self._cache.popitem(last=False)
