"""The proxy's own continue tokens for the pages of a rewritten list. Pure.

A rewritten list is read upstream in pages, and a tenant's page ends wherever its `limit` is
reached, usually inside an upstream page. The position (the upstream token that re-reads that
page, how many of its entries were answered, the list's snapshot) must travel to the client,
but the API server's own token names the last object of a page, which is another tenant's.
So the position is sealed with AES-GCM: opaque to the client, bound to the caller and to the
query it continues, and checked when it comes back.

The key is derived (HKDF) from a secret every replica and worker already shares (the serving
key), so a token issued by one is read by any other. When the serving key rotates, tokens of
the key before stay readable (replicas reload the file at slightly different moments); a token
of an older key is answered `410 Expired`, the API server's answer for a token it can no longer
serve, from which clients re-list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import asdict, dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"tenant-proxy continue token v1"
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")
_KEY_ID_BYTES, _NONCE_BYTES = 4, 12


@dataclass(frozen=True)
class Position:
    """Where the next page of a tenant's list starts."""

    upstream: str  # upstream continue token that re-reads the page; "" for the first page
    skip: int  # entries of that upstream page already answered
    resource_version: str  # the list's snapshot: every page answers from it
    page: int  # the upstream page size the position counts in
    after: str = ""  # served from the watch cache: the last name answered (upstream is "")
    seq: int = -1  # ...and where in the cache's timeline the first page stood,
    cache: str = ""  # in the cache of this process (another one finds it by resource_version)


class TokenExpired(Exception):
    """Sealed under another key (the proxy's key rotated): the client should re-list."""


class TokenInvalid(Exception):
    """Not a token of ours, altered, or continuing another caller's or another query's list."""


class ContinueTokens:
    """Seals positions under the current key; reads tokens of the current and the previous
    key, so replicas that reloaded a rotated serving key at slightly different moments (and
    clients in the middle of a list) keep reading each other's tokens."""

    def __init__(self, secret: bytes) -> None:
        self._keys: dict[bytes, AESGCM] = {}
        self._current = b""
        self.rotate(secret)

    def rotate(self, secret: bytes) -> None:
        """Seal under a key derived from `secret` from now on; keep reading the one before."""
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
        key_id = hashlib.sha256(key).digest()[:_KEY_ID_BYTES]
        if key_id == self._current:
            return
        previous = self._keys.get(self._current)
        self._keys = {key_id: AESGCM(key)}
        if previous is not None:
            self._keys[self._current] = previous
        self._current = key_id

    def issue(self, position: Position, binding: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, orjson.dumps(asdict(position)), binding)
        return base64.urlsafe_b64encode(self._current + nonce + sealed).decode().rstrip("=")

    def read(self, token: str, binding: bytes) -> Position:
        # Strictly URL-safe base64: the decoders skip or translate other characters, so an
        # altered token could read as the original.
        if not _URLSAFE.fullmatch(token):
            raise TokenInvalid("not a continue token of this proxy")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenInvalid("not a continue token of this proxy") from None
        if len(raw) <= _KEY_ID_BYTES + _NONCE_BYTES:
            raise TokenInvalid("not a continue token of this proxy")
        key_id, nonce = raw[:_KEY_ID_BYTES], raw[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
        aead = self._keys.get(key_id)
        if aead is None:
            raise TokenExpired("the continue token was issued under an earlier key")
        try:
            fields = orjson.loads(aead.decrypt(nonce, raw[len(key_id) + len(nonce) :], binding))
            position = Position(**fields)
        except (InvalidTag, orjson.JSONDecodeError, TypeError):
            raise TokenInvalid("the continue token does not continue this list") from None
        if position.skip < 0 or position.page <= 0:
            raise TokenInvalid("the continue token does not continue this list")
        return position


def binding(*parts: str) -> bytes:
    """What a token is bound to (caller, list, selectors, shape): one unambiguous byte string."""
    return hashlib.sha256(orjson.dumps(parts)).digest()
