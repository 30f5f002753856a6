"""Bearer tokens and forged JWTs, sent without a client certificate.

The target is team-c-dev's pods, which carol's genuine OIDC token may list (the control case).
Every other credential is refused with exactly kube-apiserver's 401 body
(k8s-reference/authn-401-bad-token.txt), and the pods path is never reached. Key-injection
headers (`jku`, `x5u`, `jwk`, `x5c`) point at an attacker's server that must never be asked.
A `system:` name in a claim is prefixed into harmlessness by an issuer with a prefix, and
refused (403) by one without.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
import pytest
from attack_support import (
    World,
    assert_nothing_foreign,
    assert_unread,
    exchange,
    host_header,
    jwk_of,
    probe,
    send_raw,
)
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_pem_x509_certificate
from e2e.core_support import UNAUTHORIZED, assert_status

from tenant_proxy import pki
from tenant_proxy.demo import OIDC_ISSUER

pytestmark = [pytest.mark.e2e]

TEAM_C_PODS = "/api/v1/namespaces/team-c-dev/pods"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def subprotocol(token: str) -> str:
    return f"base64url.bearer.authorization.k8s.io.{b64url(token.encode())}"


def signed(header: dict[str, Any], claims: dict[str, Any], world: World, own: bool = True) -> str:
    """An ES256 signature over whatever header and claims, as PyJWT would refuse to make."""
    key = (
        world.issuer.key
        if own
        else (world.attacker.keys.get("evil") or world.attacker.new_key("evil"))
    )
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(
        signing_input.encode(), key
    )
    return f"{signing_input}.{b64url(signature)}"


def carol(world: World, **overrides: Any) -> dict[str, Any]:
    """carol's genuine claims, with `overrides` (None removes a claim)."""
    claims = {**world.issuer.claims("carol", ["tenant-c-devs"]), **overrides}
    return {k: v for k, v in claims.items() if v is not None}


def with_attacker_key(world: World, extra_header: Callable[[World], dict[str, Any]]) -> str:
    key = world.attacker.keys.get("evil") or world.attacker.new_key("evil")
    return jwt.encode(carol(world), key, algorithm="ES256", headers=extra_header(world))


def attacker_jwk(world: World) -> dict[str, Any]:
    """The attacker's public key embedded in the header, as the key to verify with."""
    key = world.attacker.keys.get("evil") or world.attacker.new_key("evil")
    return {"kid": "demo", "jwk": jwk_of(key, "evil")}


def x5c_token(world: World) -> str:
    rogue = pki.new_ca("rogue-signer")
    key = serialization.load_pem_private_key(rogue.key_pem, None)
    der = load_pem_x509_certificate(rogue.cert_pem).public_bytes(serialization.Encoding.DER)
    headers = {"kid": "demo", "x5c": [base64.b64encode(der).decode()]}
    return jwt.encode(carol(world), key, algorithm="ES256", headers=headers)  # type: ignore[arg-type]


def public_pem(world: World) -> bytes:
    return world.issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tampered(world: World) -> str:
    header, _, signature = world.issuer.sign(carol(world)).split(".")
    forged = b64url(orjson.dumps(carol(world, sub="admin", groups=["tenant-a-devs"])))
    return f"{header}.{forged}.{signature}"


NOW = int(time.time())


@dataclass(frozen=True)
class Case:
    id: str
    headers: Callable[[World], list[tuple[str, str]]]
    target: str = TEAM_C_PODS


def bearer(make: Callable[[World], str]) -> Callable[[World], list[tuple[str, str]]]:
    return lambda world: [("Authorization", f"Bearer {make(world)}")]


def fixed(*headers: tuple[str, str]) -> Callable[[World], list[tuple[str, str]]]:
    return lambda _world: list(headers)


def none_alg(alg: str) -> Callable[[World], str]:
    def make(world: World) -> str:
        header = b64url(orjson.dumps({"alg": alg, "typ": "JWT", "kid": "demo"}))
        return f"{header}.{b64url(orjson.dumps(carol(world)))}."

    return make


REFUSED = [
    Case("no credentials", fixed()),
    Case("bearer, no token", fixed(("Authorization", "Bearer"))),
    Case("bearer, a space", fixed(("Authorization", "Bearer "))),
    Case("bearer, whitespace", fixed(("Authorization", "Bearer \t  "))),
    Case("empty authorization", fixed(("Authorization", ""))),
    Case("basic auth", fixed(("Authorization", "Basic YWRtaW46YWRtaW4="))),
    Case("another scheme", fixed(("Authorization", "Negotiate YWRtaW4="))),
    Case(
        "two authorization headers, the first genuine",
        lambda w: [
            ("Authorization", f"Bearer {w.issuer.sign(carol(w))}"),
            ("Authorization", "Bearer garbage"),
        ],
    ),
    Case(
        "two genuine authorization headers",
        lambda w: [("Authorization", f"Bearer {w.issuer.sign(carol(w))}")] * 2,
    ),
    Case(
        "a genuine token in the query only",
        fixed(),
        target=TEAM_C_PODS + "?access_token=",  # the token is appended below
    ),
    Case("garbage", bearer(lambda _w: "not-a-token")),
    Case("alg none", bearer(none_alg("none"))),
    Case("alg None", bearer(none_alg("None"))),
    Case("alg NONE", bearer(none_alg("NONE"))),
    Case(
        "HS256 keyed with the public key",
        bearer(lambda w: w.issuer.hs256_with_public_key(carol(w))),
    ),
    Case(
        "HS256 keyed with the JWKS file",
        bearer(
            lambda w: hmac_token(
                {"alg": "HS256", "kid": "demo"}, carol(w), w.issuer.jwks_file.read_bytes()
            )
        ),
    ),
    Case(
        "HS256, kid a path to an empty file",
        bearer(
            lambda w: hmac_token({"alg": "HS256", "kid": "../../../../dev/null"}, carol(w), b"")
        ),
    ),
    Case(
        "kid injection, genuine signature",
        bearer(lambda w: jwt.encode(carol(w), w.issuer.key, "ES256", {"kid": "' OR '1'='1"})),
    ),
    Case(
        "jku to the attacker's keys",
        bearer(
            lambda w: with_attacker_key(
                w, lambda w: {"kid": "evil", "jku": f"{w.attacker.url}/jwks"}
            )
        ),
    ),
    Case(
        "x5u to the attacker's certificate",
        bearer(
            lambda w: with_attacker_key(
                w, lambda w: {"kid": "evil", "x5u": f"{w.attacker.url}/x5u"}
            )
        ),
    ),
    Case("embedded jwk", bearer(lambda w: with_attacker_key(w, attacker_jwk))),
    Case("embedded x5c chain", bearer(x5c_token)),
    Case(
        "the issuer's kid, another key",
        bearer(lambda w: with_attacker_key(w, lambda _w: {"kid": "demo"})),
    ),
    Case("claims changed after signing", bearer(tampered)),
    Case(
        "critical header",
        bearer(
            lambda w: jwt.encode(carol(w), w.issuer.key, "ES256", {"kid": "demo", "crit": ["exp"]})
        ),
    ),
    Case("no exp", bearer(lambda w: w.issuer.sign(carol(w, exp=None)))),
    Case("no iss", bearer(lambda w: w.issuer.sign(carol(w, iss=None)))),
    Case("no aud", bearer(lambda w: w.issuer.sign(carol(w, aud=None)))),
    Case(
        "expired",
        bearer(lambda w: w.issuer.sign(carol(w, iat=NOW - 7200, nbf=NOW - 7200, exp=NOW - 3600))),
    ),
    Case(
        "not yet valid", bearer(lambda w: w.issuer.sign(carol(w, nbf=NOW + 3600, exp=NOW + 7200)))
    ),
    Case("wrong audience", bearer(lambda w: w.issuer.sign(carol(w, aud="kubernetes")))),
    Case("audience list without ours", bearer(lambda w: w.issuer.sign(carol(w, aud=["a", "b"])))),
    Case(
        "issuer with a trailing slash",
        bearer(lambda w: w.issuer.sign(carol(w, iss=OIDC_ISSUER + "/"))),
    ),
    Case(
        "groups claim an object",
        bearer(lambda w: w.issuer.sign(carol(w, groups={"system:masters": True}))),
    ),
    Case("empty subject", bearer(lambda w: w.issuer.sign(carol(w, sub="")))),
    Case(
        "issuer a list",
        bearer(lambda w: signed({"alg": "ES256", "kid": "demo"}, carol(w, iss=[OIDC_ISSUER]), w)),
    ),
    Case(
        "kid an integer, another key",
        bearer(lambda w: signed({"alg": "ES256", "kid": 1}, carol(w), w, own=False)),
    ),
    Case(
        "an algorithm the issuer does not use",
        bearer(lambda w: signed({"alg": "ES384", "kid": "demo"}, carol(w), w)),
    ),
    Case("a fourth segment", bearer(lambda w: w.issuer.sign(carol(w)) + ".")),
    Case(
        "the signature cut off", bearer(lambda w: w.issuer.sign(carol(w)).rsplit(".", 1)[0] + ".")
    ),
    Case(
        "a WebSocket bearer subprotocol on a plain request",
        lambda w: [("Sec-WebSocket-Protocol", f"{subprotocol(w.issuer.sign(carol(w)))}, v5")],
    ),
]


def headers_of(world: World, case: Case) -> tuple[str, list[tuple[str, str]]]:
    target = case.target
    if target.endswith("access_token="):
        target += world.issuer.sign(carol(world))
    return target, [("Accept", "application/json"), *case.headers(world)]


async def test_genuine_token_is_accepted(world: World) -> None:
    """The control: the same request with carol's own token lists her pods."""
    mark = world.mark()
    token = world.issuer.sign(carol(world))
    answer = await exchange(
        world, "GET", TEAM_C_PODS, [("Authorization", f"Bearer {token}")], who=None
    )
    assert answer.status == 200, answer.body
    assert answer.json()["kind"] == "PodList"
    mark.assert_upstream_clean(**{"oidc:carol": ["oidc:tenant-c-devs"]})


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
async def test_bad_credentials_are_401_and_never_reach_the_api_server(
    world: World, case: Case
) -> None:
    mark = world.mark()
    target, headers = headers_of(world, case)
    answer = await exchange(world, "GET", target, headers, who=None)
    assert (answer.status, answer.json()) == (401, UNAUTHORIZED)
    assert not [p for p in mark.paths() if p.startswith(TEAM_C_PODS)]
    assert world.attacker.hits == []
    mark.assert_upstream_clean()
    await probe(world)


@pytest.mark.parametrize(
    "token",
    [b"\xff\xfe\xfd", "t\u00f6ken-\u0442\u043e\u043a\u0435\u043d".encode(), b"tok\x7fen", b"a,b c"],
    ids=["not UTF-8", "non-ASCII letters", "DEL", "comma and space"],
)
async def test_odd_token_bytes_are_401(world: World, token: bytes) -> None:
    """Bytes no token is made of: refused like any bad token (or by the parser), never a 500."""
    mark = world.mark()
    data = (
        f"GET {TEAM_C_PODS} HTTP/1.1\r\nHost: {host_header(world)}\r\n".encode()
        + b"Accept: application/json\r\nAuthorization: Bearer "
        + token
        + b"\r\nConnection: close\r\n\r\n"
    )
    answers = await send_raw(world, data, who=None)
    assert len(answers) == 1
    if answers[0].status == 400:  # refused by the HTTP parser
        assert_unread(answers[0].status, answers[0].body)
    else:
        assert (answers[0].status, answers[0].json()) == (401, UNAUTHORIZED)
    assert not [p for p in mark.paths() if p.startswith(TEAM_C_PODS)]
    await probe(world)


async def test_a_system_claim_of_a_prefixed_issuer_names_nobody_special(world: World) -> None:
    """The demo issuer prefixes names (`oidc:`): `system:masters` becomes a plain group."""
    mark = world.mark()
    claims = world.issuer.claims("system:admin", ["system:masters"])
    token = world.issuer.sign(claims)
    answer = await exchange(
        world, "GET", TEAM_C_PODS, [("Authorization", f"Bearer {token}")], who=None
    )
    assert answer.status == 403
    assert_status(answer.json(), 403, "Forbidden")
    assert 'User "oidc:system:admin" cannot list resource "pods"' in answer.json()["message"]
    mark.assert_upstream_clean(**{"oidc:system:admin": ["oidc:system:masters"]})
    await probe(world)


@pytest.mark.parametrize(
    ("subject", "groups"),
    [("system:admin", []), ("mallory", ["system:masters"]), ("system:anonymous", [])],
    ids=["system user", "system group", "anonymous"],
)
async def test_a_system_claim_of_an_unprefixed_issuer_is_403(
    world: World, subject: str, groups: list[str]
) -> None:
    world.discovery.up = True
    key = "k-system"
    if key not in world.discovery.keys:
        world.discovery.new_key(key)
    now = int(time.time())
    claims = {"iss": world.discovery.url, "aud": "tenant-proxy", "sub": subject, "groups": groups}
    token = world.discovery.token(key, {**claims, "iat": now, "exp": now + 600})
    mark = world.mark()
    answer = await exchange(
        world, "GET", TEAM_C_PODS, [("Authorization", f"Bearer {token}")], who=None
    )
    assert answer.status == 403, answer.body
    assert_status(answer.json(), 403, "Forbidden")
    assert "system:" in answer.json()["message"]
    assert not [p for p in mark.paths() if p.startswith(TEAM_C_PODS)]
    await probe(world)


async def test_two_credentials_on_a_websocket_upgrade_are_401_before_any_upgrade(
    world: World,
) -> None:
    """A bearer subprotocol beside an Authorization header: neither is guessed at."""
    token = world.issuer.sign(carol(world))
    protocol = subprotocol(token)
    data = (
        "GET /api/v1/namespaces?watch=1 HTTP/1.1\r\n"
        f"Host: {host_header(world)}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://dashboard\r\n"
        f"Sec-WebSocket-Protocol: {protocol}, base64.binary.k8s.io\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    mark = world.mark()
    answers = await send_raw(world, data, who=None, count=1)
    assert [a.status for a in answers] == [401]
    assert answers[0].json() == UNAUTHORIZED
    assert not [r for r in mark.since() if r.values("Sec-WebSocket-Protocol")]
    assert_nothing_foreign(answers[0].body)
    await probe(world)
