"""Fakes the auth tests share: an OIDC issuer, a TokenReview upstream, a request counter."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class Counter:
    """Counts requests per path and lets a test wait for a count without sleeping."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._changed = asyncio.Condition()

    def __getitem__(self, path: str) -> int:
        return self.counts.get(path, 0)

    async def hit(self, path: str) -> None:
        async with self._changed:
            self.counts[path] = self[path] + 1
            self._changed.notify_all()

    async def wait_for(self, path: str, count: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self[path] >= count), 5)


class Issuer:
    """An in-process OIDC issuer over HTTPS: discovery + JWKS, signing tokens with its keys."""

    def __init__(self, url: str, ca_file: Path, counter: Counter) -> None:
        self.url = url
        self.ca_file = ca_file
        self.requests = counter
        self.keys: dict[str, PrivateKey] = {}
        self.published: set[str] = set()
        self.down = False

    def add_key(self, kid: str, key: PrivateKey, publish: bool = True) -> None:
        self.keys[kid] = key
        if publish:
            self.published.add(kid)

    def jwks(self) -> dict[str, object]:
        keys = []
        for kid in sorted(self.published):
            public = self.keys[kid].public_key()
            if isinstance(public, rsa.RSAPublicKey):
                jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
            else:
                jwk = ECAlgorithm.to_jwk(public, as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(
        self,
        claims: dict[str, object] | None = None,
        kid: str = "rsa-1",
        alg: str | None = None,
        drop: tuple[str, ...] = (),
        headers: dict[str, object] | None = None,
    ) -> str:
        now = int(time.time())
        payload: dict[str, object] = {
            "iss": self.url,
            "aud": "tenant-proxy",
            "sub": "alice",
            "iat": now,
            "exp": now + 600,
            "groups": ["tenant-a-devs"],
        }
        payload.update(claims or {})
        for name in drop:
            payload.pop(name, None)
        key = self.keys[kid]
        algorithm = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(
            payload, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})}
        )


class Upstream:
    """Answers TokenReviews as tokenreview-valid.txt / tokenreview-invalid.txt show."""

    def __init__(self) -> None:
        self.valid: dict[str, dict[str, Any]] = {}
        self.calls = Counter()
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.calls.hit(TOKENREVIEWS)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            return web.json_response({"kind": "Status", "code": 500}, status=500)
        token = body["spec"]["token"]
        if token in self.valid:
            status: dict[str, Any] = {"authenticated": True, "user": self.valid[token]}
        else:
            status = {"user": {}, "error": "invalid bearer token"}
        return web.json_response({**body, "status": status}, status=201)
