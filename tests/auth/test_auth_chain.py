from __future__ import annotations

import pytest

from tenant_proxy.auth.base import (
    AuthenticationError,
    Credentials,
    ForbiddenIdentity,
    bearer_token,
)
from tenant_proxy.auth.chain import AuthChain
from tenant_proxy.identity import ANONYMOUS, Identity


class _Fixed:
    """Answers `result` for one token, None for anything else; counts calls."""

    def __init__(self, token: str, result: Identity | Exception) -> None:
        self.token = token
        self.result = result
        self.calls = 0

    async def authenticate(self, creds: Credentials) -> Identity | None:
        self.calls += 1
        if creds.bearer_token != self.token:
            return None
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


ALICE = Identity(user="alice", method="static")
BOB = Identity(user="bob", method="static")


async def test_first_non_none_identity_wins() -> None:
    first, second = _Fixed("a", ALICE), _Fixed("a", BOB)
    chain = AuthChain([first, second])
    assert await chain.authenticate(Credentials(bearer_token="a")) == ALICE
    assert second.calls == 0


async def test_chain_falls_through_to_next_method_on_none() -> None:
    chain = AuthChain([_Fixed("a", ALICE), _Fixed("b", BOB)])
    assert await chain.authenticate(Credentials(bearer_token="b")) == BOB


async def test_error_stops_the_chain() -> None:
    later = _Fixed("a", BOB)
    chain = AuthChain([_Fixed("a", AuthenticationError("token expired")), later])
    with pytest.raises(AuthenticationError, match="token expired"):
        await chain.authenticate(Credentials(bearer_token="a"))
    assert later.calls == 0


async def test_forbidden_identity_propagates() -> None:
    chain = AuthChain([_Fixed("a", ForbiddenIdentity("system: group"))])
    with pytest.raises(ForbiddenIdentity):
        await chain.authenticate(Credentials(bearer_token="a"))


@pytest.mark.parametrize("token", ["", " ", "\t"])
async def test_empty_token_is_refused_before_any_method(token: str) -> None:
    method = _Fixed(token, ALICE)
    chain = AuthChain([method], allow_anonymous=True)
    with pytest.raises(AuthenticationError, match="empty"):
        await chain.authenticate(Credentials(bearer_token=token))
    assert method.calls == 0


async def test_no_credentials_refused_unless_anonymous_allowed() -> None:
    with pytest.raises(AuthenticationError, match="no credentials"):
        await AuthChain([_Fixed("a", ALICE)]).authenticate(Credentials())
    anonymous = AuthChain([_Fixed("a", ALICE)], allow_anonymous=True)
    assert await anonymous.authenticate(Credentials()) == ANONYMOUS


async def test_unrecognised_token_is_401_even_with_anonymous_allowed() -> None:
    chain = AuthChain([_Fixed("a", ALICE)], allow_anonymous=True)
    with pytest.raises(AuthenticationError, match="invalid bearer token"):
        await chain.authenticate(Credentials(bearer_token="garbage"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer", ""),
        ("Bearer ", ""),
        ("Basic dXNlcjpwYXNz", ""),
        ("", ""),
    ],
)
def test_bearer_token_parsing(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


class _Broken:
    async def authenticate(self, creds: Credentials) -> Identity | None:
        raise RuntimeError(f"bug while reading {creds.bearer_token}")


async def test_unexpected_error_fails_closed_without_logging_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = AuthChain([_Broken(), _Fixed("secret-tok", ALICE)], allow_anonymous=True)
    with pytest.raises(AuthenticationError, match="authenticator failed"):
        await chain.authenticate(Credentials(bearer_token="secret-tok"))
    assert "secret-tok" not in caplog.text
    assert "RuntimeError" in caplog.text
