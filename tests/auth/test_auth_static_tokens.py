from __future__ import annotations

from pathlib import Path

import pytest

from tenant_proxy.auth.base import Credentials
from tenant_proxy.auth.static_tokens import (
    StaticTokenAuthenticator,
    TokenFileError,
    parse_token_file,
)
from tenant_proxy.identity import Identity

TOKEN_FILE = (
    '\ufeffalice-secret,alice,uid-1,"tenant-a-devs,tenant-b-devs"\n'
    "bob-secret, bob, uid-2\n"
    "\n"
    ",nobody,uid-3\n"
    "carol-secret,carol,uid-4,admins\n"
    "carol-secret,carol2,uid-5,\n"
)


async def _auth(authenticator: StaticTokenAuthenticator, token: str | None) -> Identity | None:
    return await authenticator.authenticate(Credentials(bearer_token=token))


@pytest.fixture
def authenticator(tmp_path: Path) -> StaticTokenAuthenticator:
    path = tmp_path / "tokens.csv"
    path.write_text(TOKEN_FILE, encoding="utf-8")
    return StaticTokenAuthenticator.from_file(path)


async def test_token_file_rows_become_identities(authenticator: StaticTokenAuthenticator) -> None:
    assert await _auth(authenticator, "alice-secret") == Identity(
        user="alice", groups=("tenant-a-devs", "tenant-b-devs"), uid="uid-1", method="static"
    )
    bob = await _auth(authenticator, "bob-secret")
    assert bob is not None
    assert (bob.user, bob.groups, bob.uid) == ("bob", (), "uid-2")


async def test_later_duplicate_replaces_earlier(authenticator: StaticTokenAuthenticator) -> None:
    carol = await _auth(authenticator, "carol-secret")
    assert carol is not None
    assert (carol.user, carol.groups) == ("carol2", ())


async def test_unknown_empty_or_absent_tokens_are_not_ours(
    authenticator: StaticTokenAuthenticator,
) -> None:
    for token in ("nobody", "", None, "alice-secret ", "ALICE-SECRET"):
        assert await _auth(authenticator, token) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tok,alice\n", "line 1: at least 3 columns"),
        ("ok,alice,1\ntok,  ,2\n", "line 2: empty user"),
        ('tok,"alice,1\n', "line"),
    ],
)
def test_malformed_token_files_are_refused_without_echoing_tokens(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message) as err:
        parse_token_file(text)
    assert "tok" not in str(err.value).replace("token", "")


def test_only_digests_are_kept() -> None:
    identities = parse_token_file(TOKEN_FILE)
    assert all(len(k) == 64 and "secret" not in k for k in identities)
