"""No client header survives that could pass for a credential or an impersonation request."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.headers import (
    escape_extra_key,
    forwarded_for,
    impersonation_headers,
    strip_client_headers,
    strip_response_headers,
    websocket_bearer,
)
from tenant_proxy.identity import Identity
from tenant_proxy.status import ApiError

ALICE = Identity(user="alice", groups=("tenant-a-devs", "system:authenticated"), method="x509")


def forwarded(client: list[tuple[str, str]], identity: Identity = ALICE) -> list[tuple[str, str]]:
    """What goes upstream: the client's headers stripped, then the proxy's own added."""
    return strip_client_headers(client) + impersonation_headers(identity)


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


def letters(name: str) -> str:
    """How a lenient server might normalise a header name: case, `_`, `-`, `.` and spaces."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


SMUGGLED = [
    ("Impersonate-User", "admin"),
    ("impersonate-user", "admin"),
    ("IMPERSONATE-USER", "admin"),
    ("Impersonate_User", "admin"),
    ("Impersonate-Group", "system:masters"),
    ("impersonate-group", "system:masters"),
    ("Impersonate-Extra-Scopes", "everything"),
    ("Impersonate-Uid", "0"),
    ("Authorization", "Bearer stolen"),
    ("authorization", "Basic YWRtaW46YWRtaW4="),
    ("Proxy-Authorization", "Bearer stolen"),
    ("X-Remote-User", "admin"),
    ("X-Remote-Group", "system:masters"),
    ("X-Remote-Extra-Scopes", "all"),
    ("X-Remote-Uid", "0"),
]


def test_smuggled_credentials_and_impersonation_never_reach_upstream() -> None:
    sent = forwarded([*SMUGGLED, ("Accept", "application/json")])
    assert values(sent, "Impersonate-User") == ["alice"]
    assert values(sent, "Impersonate-Group") == ["tenant-a-devs", "system:authenticated"]
    assert not [n for n, _ in sent if letters(n) in {"authorization", "proxyauthorization"}]
    assert not [n for n, _ in sent if letters(n).startswith(("xremote", "impersonateextra"))]
    assert values(sent, "Accept") == ["application/json"]


def test_connection_naming_our_headers_cannot_remove_them() -> None:
    client = [
        ("Connection", "Impersonate-User, Authorization, Impersonate-Group"),
        ("Impersonate-User", "admin"),
        ("Content-Type", "application/json"),
    ]
    sent = forwarded(client)
    assert values(sent, "Impersonate-User") == ["alice"]
    assert values(sent, "Impersonate-Group") == ["tenant-a-devs", "system:authenticated"]
    assert values(sent, "Content-Type") == ["application/json"]
    assert values(sent, "Connection") == []


def test_connection_named_headers_of_the_client_are_dropped_but_not_body_framing() -> None:
    client = [
        ("Connection", "keep-alive, X-Debug, Content-Length"),
        ("connection", "X-Other"),
        ("X-Debug", "1"),
        ("X-Other", "2"),
        ("Content-Length", "12"),
        ("X-Kept", "3"),
    ]
    assert strip_client_headers(client) == [("Content-Length", "12"), ("X-Kept", "3")]


@pytest.mark.parametrize(
    "name",
    ["Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding",
     "Upgrade", "keep_alive", "Host"],
)  # fmt: skip
def test_hop_by_hop_and_host_headers_are_not_forwarded(name: str) -> None:
    assert strip_client_headers([(name, "x"), ("Accept", "*/*")]) == [("Accept", "*/*")]


def test_ordinary_headers_pass_in_order_with_repeats() -> None:
    client = [
        ("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io"),
        ("User-Agent", "kubectl/v1.37"),
        ("Warning", "a"),
        ("Warning", "b"),
        ("Content-Type", "application/merge-patch+json"),
        ("Accept-Encoding", "gzip"),
    ]
    assert strip_client_headers(client) == client


@pytest.mark.parametrize(
    "header",
    [(" Impersonate-User", "admin"), ("Impersonate-User ", "admin"), ("Impersonate User", "x"),
     ("Impersonate-Üser", "admin"), ("X-Fine", "a\r\nImpersonate-User: admin"), ("X-Nul", "a\x00")],
)  # fmt: skip
def test_malformed_names_and_line_splitting_values_are_dropped(header: tuple[str, str]) -> None:
    assert strip_client_headers([header]) == []


def test_response_headers_keep_kubernetes_ones_and_drop_hop_by_hop() -> None:
    upstream = [
        ("Audit-Id", "ca02d063"),
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Warning", '299 - "deprecated"'),
        ("Retry-After", "3"),
        ("Connection", "keep-alive, X-Internal"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("X-Internal", "1"),
    ]
    assert strip_response_headers(upstream) == upstream[:5]


def test_impersonation_headers_carry_user_groups_extra_and_uid() -> None:
    identity = Identity(
        user="system:serviceaccount:team-a-dev:builder",
        groups=("system:serviceaccounts", "system:serviceaccounts:team-a-dev"),
        extra={"authentication.kubernetes.io/pod-name": ("builder-1",), "scopes": ("a", "b")},
        uid="1234",
    )
    assert impersonation_headers(identity) == [
        ("Impersonate-User", "system:serviceaccount:team-a-dev:builder"),
        ("Impersonate-Group", "system:serviceaccounts"),
        ("Impersonate-Group", "system:serviceaccounts:team-a-dev"),
        ("Impersonate-Extra-authentication.kubernetes.io%2Fpod-name", "builder-1"),
        ("Impersonate-Extra-scopes", "a"),
        ("Impersonate-Extra-scopes", "b"),
        ("Impersonate-Uid", "1234"),
    ]


def test_impersonation_of_a_user_without_groups_is_just_the_user() -> None:
    assert impersonation_headers(Identity(user="bob")) == [("Impersonate-User", "bob")]


@dataclass(frozen=True)
class LooseIdentity:
    """An identity that skips Identity's checks, to test this module's own guard."""

    user: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""


@pytest.mark.parametrize(
    "identity",
    [
        LooseIdentity(user=""),
        LooseIdentity(user="alice\r\nImpersonate-Group: system:masters"),
        LooseIdentity(user="alice", groups=(" system:masters",)),
        LooseIdentity(user="alice", groups=("system:masters\t",)),
        LooseIdentity(user="alice", extra={"": ("x",)}),
        LooseIdentity(user="alice", extra={"k": ("a\nb",)}),
        LooseIdentity(user="alice", uid="1\n"),
    ],
)
def test_identity_a_header_cannot_carry_faithfully_is_refused(identity: LooseIdentity) -> None:
    with pytest.raises(ApiError) as refused:
        impersonation_headers(identity)
    assert refused.value.code == 403


@pytest.mark.parametrize(
    ("key", "escaped"),
    [
        ("scopes", "scopes"),
        ("authentication.kubernetes.io/pod-name", "authentication.kubernetes.io%2Fpod-name"),
        ("a%b", "a%25b"),
        ("with space", "with%20space"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("a:b=c,d", "a%3Ab%3Dc%2Cd"),
    ],
)
def test_extra_keys_are_escaped_as_client_go_escapes_them(key: str, escaped: str) -> None:
    assert escape_extra_key(key) == escaped


@given(st.text(min_size=1))
def test_every_extra_key_round_trips_through_the_servers_unescaping(key: str) -> None:
    escaped = escape_extra_key(key)
    assert strip_client_headers([(f"X-{escaped}", "v")]) == [(f"X-{escaped}", "v")]  # a token
    # kube-apiserver: url.PathUnescape(strings.ToLower(suffix)); ToLower only touches ASCII here.
    lowered = "".join(ch.lower() if ch.isascii() else ch for ch in key)
    assert unquote(escaped.lower(), errors="strict") == lowered


# ---- property: nothing a client sends normalises to a credential or impersonation header -----

DANGEROUS = ["Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-x",
             "Authorization", "Proxy-Authorization", "X-Remote-User", "X-Remote-Group"]  # fmt: skip
BENIGN = ["Accept", "Content-Type", "User-Agent", "X-Request-Id", "Audit-Id", "Content-Length"]


@st.composite
def mangled_names(draw: st.DrawFn) -> str:
    """A dangerous name in mixed case, with `-` swapped for `_`, `.`, ` ` or nothing, padded."""
    name = draw(st.sampled_from(DANGEROUS))
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
    sep = draw(st.sampled_from(["-", "_", ".", "", " ", "--"]))
    pad = draw(st.sampled_from(["", " ", "\t"]))
    return pad + cased.replace("-", sep) + draw(st.sampled_from(["", " "]))


header_names = st.one_of(mangled_names(), st.sampled_from(DANGEROUS + BENIGN), st.text(max_size=20))
connection_values = st.lists(st.one_of(mangled_names(), st.sampled_from(BENIGN)), max_size=4).map(
    ", ".join
)
client_headers = st.lists(
    st.one_of(
        st.tuples(header_names, st.text(max_size=20)),
        st.tuples(st.sampled_from(["Connection", "connection", "CONNECTION"]), connection_values),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(client_headers)
def test_no_forwarded_header_normalises_to_a_credential_but_ours(
    client: list[tuple[str, str]],
) -> None:
    sent = forwarded(client)
    ours = impersonation_headers(ALICE)
    theirs = strip_client_headers(client)
    for name, _ in theirs:
        key = letters(name)
        assert not key.startswith(("impersonate", "xremote"))
        assert key not in {"authorization", "proxyauthorization", "connection", "host"}
    assert [(n, v) for n, v in sent if letters(n) == "impersonateuser"] == [
        ("Impersonate-User", "alice")
    ]
    assert sent[len(theirs) :] == ours


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(BENIGN), st.text("abc;=/ ", max_size=8)), max_size=8))
def test_benign_headers_survive_unchanged_without_a_connection_header(
    client: list[tuple[str, str]],
) -> None:
    assert strip_client_headers(client) == client


# ---- WebSocket bearer subprotocol -------------------------------------------------------------


def bearer(token: str) -> str:
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return f"base64url.bearer.authorization.k8s.io.{encoded}"


def test_websocket_bearer_is_taken_out_of_the_protocols() -> None:
    header = f"v5.channel.k8s.io, {bearer('sa-token.x_y')}, v4.channel.k8s.io"
    assert websocket_bearer(header) == ("sa-token.x_y", "v5.channel.k8s.io, v4.channel.k8s.io")


def test_no_bearer_protocol_means_no_token() -> None:
    assert websocket_bearer("v4.channel.k8s.io") == (None, "v4.channel.k8s.io")
    assert websocket_bearer("") == (None, "")


@pytest.mark.parametrize(
    "header",
    [
        bearer("only-protocol"),  # nothing left to agree on
        f"{bearer('a')}, {bearer('b')}, v4.channel.k8s.io",  # two credentials
        "base64url.bearer.authorization.k8s.io., v4.channel.k8s.io",  # empty token
        "base64url.bearer.authorization.k8s.io.a+b/, v4.channel.k8s.io",  # not base64url
        "base64url.bearer.authorization.k8s.io.YQ==, v4.channel.k8s.io",  # padded
        "base64url.bearer.authorization.k8s.io.A, v4.channel.k8s.io",  # impossible length
        "base64url.bearer.authorization.k8s.io._w, v4.channel.k8s.io",  # 0xff: not UTF-8
        "BASE64URL.bearer.authorization.k8s.io.YQ, v4.channel.k8s.io",  # a look-alike
    ],
)
def test_unusable_bearer_protocol_is_an_empty_token_and_never_forwarded(header: str) -> None:
    token, remaining = websocket_bearer(header)
    assert token == ""
    assert "bearer" not in remaining.lower()


@given(st.text(min_size=1), st.lists(st.sampled_from(["v4.channel.k8s.io", "x"]), min_size=1))
def test_any_bearer_token_round_trips(token: str, others: list[str]) -> None:
    header = ", ".join([bearer(token), *others])
    assert websocket_bearer(header) == (token, ", ".join(others))


def test_the_clients_address_is_appended_to_its_forwarded_for_lines_folded_into_one() -> None:
    sent = [("Accept", "a"), ("X-Forwarded-For", "203.0.113.7"), ("x-forwarded-for", "10.0.0.1")]
    assert forwarded_for(sent, "192.0.2.1") == [
        ("Accept", "a"),
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.1, 192.0.2.1"),
    ]
    assert forwarded_for([("Accept", "a")], "192.0.2.1") == [
        ("Accept", "a"),
        ("X-Forwarded-For", "192.0.2.1"),
    ]
    # Another name to the API server (Go keys headers case-insensitively, nothing more).
    odd = [("X_Forwarded_For", "6.6.6.6")]
    assert forwarded_for(odd, "192.0.2.1") == [*odd, ("X-Forwarded-For", "192.0.2.1")]
    assert forwarded_for(odd, "") == odd


@given(st.lists(st.tuples(st.sampled_from(["X-Forwarded-For", "Accept", "X-A"]), st.text())))
def test_forwarded_for_ends_with_the_client_and_keeps_every_other_header(
    sent: list[tuple[str, str]],
) -> None:
    out = forwarded_for(sent, "192.0.2.1")
    assert out[-1][0] == "X-Forwarded-For"
    assert out[-1][1].endswith("192.0.2.1")
    assert out[:-1] == [h for h in sent if h[0] != "X-Forwarded-For"]
