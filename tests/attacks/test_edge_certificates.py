"""A client certificate the proxy cannot verify is a 401 Status, as from kube-apiserver.

The handshake completes (the listener requests, not requires, a certificate); each request
verifies it. kubectl then says "You must be logged in to the server", never "EOF" (transcript
authn-401-foreign-cert, made with a self-signed O=system:masters certificate). Beside a valid
bearer token, such a certificate does not decide: kube-apiserver's union authenticator goes on
to the token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from edge_support import EdgeDemo, edge_demo, read_response

from tenant_proxy import pki, pki_verify
from tenant_proxy.emulator.testing import kubectl_async

FAILURES = "tenant_proxy_authentication_failures_total"
UNKNOWN_AUTHORITY = pki_verify.UNKNOWN_AUTHORITY
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def foreign_admin() -> pki.KeyPair:
    """As in the transcript: O=system:masters, signed by a CA the proxy does not trust."""
    return pki.issue_client_cert(pki.new_ca("somebody-else"), "mallory", ["system:masters"])


CASES: dict[str, tuple[Callable[[pki.KeyPair], pki.KeyPair], str]] = {
    "foreign CA": (lambda _ca: foreign_admin(), UNKNOWN_AUTHORITY),
    "expired": (
        lambda ca: pki.issue_client_cert(
            ca, "alice", ["tenant-a-devs"], not_before=NOW - 3 * DAY, not_after=NOW - DAY
        ),
        "client certificate expired",
    ),
    "not yet valid": (
        lambda ca: pki.issue_client_cert(
            ca, "alice", ["tenant-a-devs"], not_before=NOW + DAY, not_after=NOW + 3 * DAY
        ),
        "client certificate not yet valid",
    ),
    "wrong usage": (
        lambda ca: pki.issue_server_cert(ca, ["alice"]),
        "certificate not issued for client authentication",
    ),
}


def make(case: str, demo: EdgeDemo) -> pki.KeyPair:
    return CASES[case][0](demo.client_ca)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[EdgeDemo]:
    async with edge_demo(tmp_path) as started:
        yield started


@pytest.mark.kubectl
@pytest.mark.parametrize("case", list(CASES))
async def test_unverifiable_certificate_is_401_for_kubectl(demo: EdgeDemo, case: str) -> None:
    kubeconfig = demo.cert_kubeconfig("unverifiable", make(case, demo))
    done = await kubectl_async(kubeconfig, "get", "namespaces", seconds=60)
    assert done.returncode != 0
    # kubectl's words for a 401 (this kubectl: "... (the server has asked for the client to
    # provide credentials)"; older ones: "(Unauthorized)").
    assert "You must be logged in to the server" in done.stderr, done.stderr
    assert "EOF" not in done.stderr
    assert demo.sample(FAILURES, reason=CASES[case][1]) >= 1


async def test_foreign_certificate_gets_the_api_servers_401_status(demo: EdgeDemo) -> None:
    reader, writer = await demo.connect(foreign_admin())
    writer.write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: proxy\r\n\r\n")
    code, body = await read_response(reader)
    assert (code, orjson.loads(body)) == (
        401,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        },
    )
    writer.close()


@pytest.mark.kubectl
async def test_valid_token_beside_a_foreign_certificate_authenticates_as_the_token(
    demo: EdgeDemo,
) -> None:
    token = demo.issuer.token("carol", ["tenant-c-devs"])
    kubeconfig = demo.cert_kubeconfig("carol-and-mallory", foreign_admin(), token=token)
    done = await kubectl_async(kubeconfig, "auth", "whoami", "-o", "json", seconds=60)
    assert done.returncode == 0, done.stderr
    user = orjson.loads(done.stdout)["status"]["userInfo"]
    assert user["username"] == "oidc:carol"
    assert "system:masters" not in user.get("groups", [])


async def test_valid_certificate_still_authenticates(demo: EdgeDemo) -> None:
    reader, writer = await demo.connect(demo.alice())
    writer.write(b"GET /api/v1/namespaces/team-a-dev/pods HTTP/1.1\r\nHost: proxy\r\n\r\n")
    code, _ = await read_response(reader)
    assert code == 200
    writer.close()


# -- the verification itself (pure) -------------------------------------------------------------
CA = pki.new_ca("client-ca")
ROOTS = pki_verify.load_trust(CA.cert_pem)


def certificate_problem(
    cert: x509.Certificate, trust: pki_verify.ClientTrust, now: dt.datetime
) -> str | None:
    """The reason the listener gives for `cert` (tenant_proxy.tls.client_certificate)."""
    try:
        pki_verify.verify_client_certificate(trust, [cert.public_bytes(Encoding.DER)], now)
    except pki_verify.ClientCertificateError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("pair", "problem"),
    [
        (pki.issue_client_cert(CA, "alice"), None),
        (foreign_admin(), UNKNOWN_AUTHORITY),
        (
            pki.issue_client_cert(CA, "a", not_before=NOW - 3 * DAY, not_after=NOW - DAY),
            "client certificate expired",
        ),
        (
            pki.issue_client_cert(CA, "a", not_before=NOW + DAY, not_after=NOW + 3 * DAY),
            "client certificate not yet valid",
        ),
        (pki.issue_server_cert(CA, ["a"]), "certificate not issued for client authentication"),
    ],
)
def test_certificate_problem(pair: pki.KeyPair, problem: str | None) -> None:
    assert certificate_problem(x509.load_pem_x509_certificate(pair.cert_pem), ROOTS, NOW) == problem


def test_same_subject_other_key_is_unknown_authority() -> None:
    """A CA of the same name but another key (an impostor) vouches for nothing."""
    impostor = pki.new_ca("client-ca")
    cert = x509.load_pem_x509_certificate(pki.issue_client_cert(impostor, "alice").cert_pem)
    assert certificate_problem(cert, ROOTS, dt.datetime.now(dt.UTC)) == UNKNOWN_AUTHORITY


def test_certificate_listed_in_the_bundle_is_its_own_anchor() -> None:
    """As Go's x509 with the leaf itself in the roots pool."""
    cert = x509.load_pem_x509_certificate(
        pki.issue_client_cert(pki.new_ca("elsewhere"), "bot").cert_pem
    )
    trust = pki_verify.load_trust(CA.cert_pem + cert.public_bytes(Encoding.PEM))
    assert certificate_problem(cert, trust, dt.datetime.now(dt.UTC)) is None


def test_expired_ca_vouches_for_nothing() -> None:
    cert = x509.load_pem_x509_certificate(pki.issue_client_cert(CA, "alice").cert_pem)
    later = x509.load_pem_x509_certificate(CA.cert_pem).not_valid_after_utc + DAY
    assert certificate_problem(cert, ROOTS, later) in {
        "client certificate expired",
        "client CA certificate expired or not yet valid",
    }
