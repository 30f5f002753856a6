"""Static bearer tokens from kube-apiserver's token file (CSV: token,user,uid,"group1,group2").

For demos and tests. Tokens are kept only as SHA-256 digests, so the lookup compares digests and
no raw token stays in memory. Like kube-apiserver: at least three columns, leading spaces
trimmed, rows with an empty token skipped, a later duplicate replaces an earlier one.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from pathlib import Path

from tenant_proxy.auth.base import Credentials, token_digest
from tenant_proxy.identity import Identity

log = logging.getLogger(__name__)


class TokenFileError(ValueError):
    """The token file is malformed; the message names the line, never the token."""


def parse_token_file(text: str) -> dict[str, Identity]:
    """Identities by token digest."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), skipinitialspace=True)
    identities: dict[str, Identity] = {}
    try:
        for record in reader:
            _add_record(identities, record, reader.line_num)
    except csv.Error as err:
        raise TokenFileError(f"token file line {reader.line_num}: {err}") from None
    return identities


def _add_record(identities: dict[str, Identity], record: list[str], line: int) -> None:
    if not record:
        return
    if len(record) < 3:
        raise TokenFileError(f"token file line {line}: at least 3 columns (token,user,uid)")
    token, user, uid = record[0], record[1], record[2]
    if not token:
        log.warning("token file line %d: empty token skipped", line)
        return
    if not user.strip():
        raise TokenFileError(f"token file line {line}: empty user")
    groups = tuple(g for g in record[3].split(",") if g) if len(record) > 3 else ()
    digest = token_digest(token)
    if digest in identities:
        log.warning("token file line %d: duplicate token replaces an earlier one", line)
    identities[digest] = Identity(user=user, groups=groups, uid=uid, method="static")


class StaticTokenAuthenticator:
    """Accepts exactly the tokens of a token file; any other token is not its kind (None)."""

    def __init__(self, identities: Mapping[str, Identity]) -> None:
        self._identities = dict(identities)

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokenAuthenticator:
        return cls(parse_token_file(Path(path).read_text(encoding="utf-8")))

    async def authenticate(self, creds: Credentials) -> Identity | None:
        if not creds.bearer_token:
            return None
        return self._identities.get(token_digest(creds.bearer_token))
