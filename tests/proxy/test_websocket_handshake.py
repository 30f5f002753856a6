"""The pure side of watches over WebSocket: which requests are, and what the API server refuses.

The proxy and the emulator each model kube-apiserver's rules; where both do, they must agree.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import watching as emulator_rules
from tenant_proxy.headers import BEARER_PROTOCOL_PREFIX
from tenant_proxy.websocket_handshake import (
    handshake_refusal,
    is_websocket_upgrade,
    subprotocols,
)

ORIGIN = "https://headlamp.example"
connection_tokens = st.lists(
    st.sampled_from(["upgrade", "Upgrade", "UPGRADE", "keep-alive", "close", "upgrades", "x"]),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize(
    "is_upgrade",
    [is_websocket_upgrade, emulator_rules.is_websocket_upgrade],
    ids=["proxy", "emulator"],
)
@given(connection_tokens, st.sampled_from([",", ", ", " ,", " , "]))
def test_an_upgrade_token_anywhere_in_connection_means_websocket(
    is_upgrade: Callable[[str, str], bool], tokens: list[str], separator: str
) -> None:
    connection = separator.join(tokens)
    expected = "upgrade" in (t.lower() for t in tokens)
    assert is_upgrade("websocket", connection) is expected
    assert is_upgrade("WebSocket", connection) is expected
    assert is_upgrade("SPDY/3.1", connection) is False
    assert is_upgrade("", connection) is False


@given(st.text(max_size=12), st.text(max_size=30))
def test_proxy_and_emulator_agree_on_what_is_a_websocket_request(
    upgrade: str, connection: str
) -> None:
    proxy = is_websocket_upgrade(upgrade, connection)
    assert proxy == emulator_rules.is_websocket_upgrade(upgrade, connection)


@given(st.one_of(st.text(max_size=20), st.sampled_from(["http://h", "/p", "*", "null", "a:b"])))
def test_proxy_and_emulator_agree_on_which_origins_pass(origin: str) -> None:
    refused = handshake_refusal("13", origin, []) is not None
    assert refused is not emulator_rules.origin_accepted(origin)


names = st.lists(
    st.from_regex(r"[a-z][a-z0-9.]{0,20}", fullmatch=True).filter(
        lambda n: not n.startswith("base64url.bearer")
    ),
    max_size=3,
)


@given(names, st.text(min_size=1, max_size=30), st.integers(min_value=0, max_value=3))
def test_the_bearer_subprotocol_is_taken_out_and_the_rest_kept_in_order(
    offered: list[str], token: str, position: int
) -> None:
    encoded = base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()
    with_token = [*offered]
    with_token.insert(min(position, len(offered)), BEARER_PROTOCOL_PREFIX + encoded)
    assert subprotocols([", ".join(with_token)]) == offered
    # Several header fields are one list (RFC 6455 11.3.4).
    assert subprotocols(with_token) == offered


@pytest.mark.parametrize(
    ("version", "origin", "offered", "code"),
    [
        ("13", ORIGIN, ["base64.binary.k8s.io"], None),
        ("13", ORIGIN, [], None),
        ("13", "/relative", ["anything"], None),
        ("13", "*", [], None),
        ("8", ORIGIN, [], 400),
        ("13", "", [], 403),
        ("13", "null", [], 403),
        ("13", "headlamp.example", [], 403),
        ("13", "http://x\x01", [], 403),
        ("13", ORIGIN, ["base64.binary.k8s.io", "binary.k8s.io"], 400),
    ],
)
def test_refusals_follow_x_net_websocket(
    version: str, origin: str, offered: list[str], code: int | None
) -> None:
    refusal = handshake_refusal(version, origin, offered)
    assert (refusal.code if refusal is not None else None) == code
