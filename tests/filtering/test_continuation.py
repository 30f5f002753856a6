"""The proxy's continue tokens: sealed, bound, and expiring with the key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.filtering.continuation import (
    ContinueTokens,
    Position,
    TokenExpired,
    TokenInvalid,
    binding,
)

TOKENS = ContinueTokens(b"serving key bytes")
BOUND = binding("alice", "tenant-a-devs", "/api/v1/persistentvolumes", "", "", "application/json")

positions = st.builds(
    Position,
    upstream=st.text(max_size=40),
    skip=st.integers(0, 10_000),
    resource_version=st.text(alphabet="0123456789", max_size=12),
    page=st.integers(1, 10_000),
)


@given(positions)
def test_a_token_reads_back_as_the_position_it_sealed(position: Position) -> None:
    assert TOKENS.read(TOKENS.issue(position, BOUND), BOUND) == position


@given(positions, st.integers(0, 200), st.integers(1, 127))
def test_any_altered_byte_is_refused(position: Position, at: int, flip: int) -> None:
    token = TOKENS.issue(position, BOUND)
    raw = bytearray(token.encode())
    at %= len(raw) - 1  # the last character may carry padding bits that decode the same
    raw[at] = (raw[at] + flip) % 128
    with pytest.raises((TokenInvalid, TokenExpired)):
        assert TOKENS.read(raw.decode(errors="replace"), BOUND) != position


def test_a_token_continues_only_its_callers_list() -> None:
    token = TOKENS.issue(Position("up", 3, "42", 500), BOUND)
    for other in (
        binding("bob", "tenant-b-devs", "/api/v1/persistentvolumes", "", "", "application/json"),
        binding("alice", "tenant-a-devs", "/api/v1/nodes", "", "", "application/json"),
        binding(
            "alice", "tenant-a-devs", "/api/v1/persistentvolumes", "x=y", "", "application/json"
        ),
    ):
        with pytest.raises(TokenInvalid):
            TOKENS.read(token, other)


def test_a_token_of_another_key_has_expired() -> None:
    token = ContinueTokens(b"the key before rotation").issue(Position("", 1, "7", 500), BOUND)
    with pytest.raises(TokenExpired):
        TOKENS.read(token, BOUND)


@pytest.mark.parametrize("junk", ["", "x", "not base64 !", "AAAA", "A" * 400])
def test_junk_is_not_a_token(junk: str) -> None:
    with pytest.raises((TokenInvalid, TokenExpired)):
        TOKENS.read(junk, BOUND)


def test_bindings_do_not_run_parts_together() -> None:
    assert binding("ab", "c") != binding("a", "bc")


def test_after_a_rotation_tokens_of_the_key_before_still_read_and_older_ones_expire() -> None:
    tokens = ContinueTokens(b"key 1")
    position = Position("up", 2, "40", 500)
    by_first = tokens.issue(position, BOUND)
    tokens.rotate(b"key 2")
    by_second = tokens.issue(position, BOUND)
    assert tokens.read(by_first, BOUND) == position  # a replica that has not reloaded yet
    assert tokens.read(by_second, BOUND) == position
    not_yet_rotated = ContinueTokens(b"key 1")
    not_yet_rotated.rotate(b"key 2")  # the other replica, once it reloaded
    assert not_yet_rotated.read(by_second, BOUND) == position
    tokens.rotate(b"key 2")  # the same key again changes nothing
    assert tokens.read(by_first, BOUND) == position
    tokens.rotate(b"key 3")
    with pytest.raises(TokenExpired):
        tokens.read(by_first, BOUND)
    assert tokens.read(by_second, BOUND) == position
