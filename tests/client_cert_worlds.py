"""Client-certificate situations for property tests, and Go's verdict on each.

A `World` is a client CA bundle and a leaf: CAs valid or not at `NOW`, with or without an
extended key usage, a keyUsage, cA; a renewed CA (same name and key, other dates); an
intermediate in the bundle or not; a leaf from one of them, a foreign or impostor CA, or
self-signed, itself in the bundle or not. `go_verdict` is what kube-apiserver's x509
authenticator decides: Go's `Certificate.Verify` with `KeyUsages: [ExtKeyUsageClientAuth]`,
roots = the bundle, no intermediates (Python < 3.13 gives the leaf only), written from
crypto/x509/verify.go and x509.go (`Verify`, `buildChains`, `isValid`, `CheckSignatureFrom`,
`checkChainForKeyUsage`), with the failure named by the proxy's reasons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import strategies as st

from tenant_proxy import pki_verify as pv

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
WINDOWS = {
    "valid": (NOW - 2 * DAY, NOW + 2 * DAY),
    "expired": (NOW - 3 * DAY, NOW - DAY),
    "not yet valid": (NOW + DAY, NOW + 3 * DAY),
    "ends now": (NOW - DAY, NOW),
    "starts now": (NOW, NOW + DAY),
    "ended a second ago": (NOW - DAY, NOW - dt.timedelta(seconds=1)),
}
CLIENT, SERVER, ANY = (
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
)
EKUS: list[tuple[x509.ObjectIdentifier, ...] | None] = [
    None,
    (CLIENT,),
    (SERVER,),
    (ANY,),
    (SERVER, CLIENT),
    (ExtendedKeyUsageOID.CODE_SIGNING,),
]
CA_EKUS = [None, None, None, (CLIENT,), (SERVER,), (ANY,)]


@dataclass(frozen=True)
class CASpec:
    window: str = "valid"
    eku: tuple[x509.ObjectIdentifier, ...] | None = None
    key_usage: str = "certsign"  # "certsign", "absent" or "no-certsign"
    is_ca: bool = True
    ca_critical: bool = True


@dataclass(frozen=True)
class World:
    roots: tuple[CASpec, ...]
    roots_in_bundle: tuple[bool, ...]
    renewed: str | None  # root 0 again, same name and key: its window; None: not renewed
    renewed_first: bool
    intermediate: CASpec | None  # issued by root 0
    intermediate_in_bundle: bool
    issuer: str  # "root:<i>", "intermediate", "foreign", "impostor", "self"
    leaf_window: str
    leaf_eku: tuple[x509.ObjectIdentifier, ...] | None
    leaf_is_ca: bool
    leaf_in_bundle: bool


def _ca_specs() -> st.SearchStrategy[CASpec]:
    return st.builds(
        CASpec,
        window=st.sampled_from(["valid", "valid", *WINDOWS]),
        eku=st.sampled_from(CA_EKUS),
        key_usage=st.sampled_from(["certsign", "certsign", "absent", "no-certsign"]),
        is_ca=st.sampled_from([True, True, True, False]),
        ca_critical=st.booleans(),
    )


@st.composite
def worlds(draw: st.DrawFn) -> World:
    roots = tuple(draw(st.lists(_ca_specs(), min_size=1, max_size=3)))
    intermediate = draw(st.none() | _ca_specs())
    issuers = [f"root:{i}" for i in range(len(roots))] + ["foreign", "impostor", "self"]
    if intermediate is not None:
        issuers.append("intermediate")
    return World(
        roots=roots,
        roots_in_bundle=tuple(draw(st.lists(st.booleans(), min_size=3, max_size=3))),
        renewed=draw(st.none() | st.sampled_from(list(WINDOWS))),
        renewed_first=draw(st.booleans()),
        intermediate=intermediate,
        intermediate_in_bundle=draw(st.booleans()),
        issuer=draw(st.sampled_from(issuers)),
        leaf_window=draw(st.sampled_from(["valid", "valid", *WINDOWS])),
        leaf_eku=draw(st.sampled_from(EKUS)),
        leaf_is_ca=draw(st.sampled_from([False, False, False, True])),
        leaf_in_bundle=draw(st.sampled_from([False, False, True])),
    )


Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    subject: str,
    key: Key,
    issuer: tuple[x509.Name, Key] | None,
    window: str,
    eku: tuple[x509.ObjectIdentifier, ...] | None,
    *,
    is_ca: bool,
    key_usage: str = "absent",
    ca_critical: bool = True,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(subject), key)
    start, end = WINDOWS[window]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=None), critical=ca_critical or not is_ca
        )
    )
    if key_usage != "absent":
        sign = key_usage == "certsign"
        builder = builder.add_extension(
            x509.KeyUsage(True, False, not is_ca, False, False, sign, sign, False, False),
            critical=True,
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _ca(cn: str, key: Key, spec: CASpec, issuer: tuple[x509.Name, Key] | None) -> x509.Certificate:
    return _certificate(
        cn,
        key,
        issuer,
        spec.window,
        spec.eku,
        is_ca=spec.is_ca,
        key_usage=spec.key_usage,
        ca_critical=spec.ca_critical,
    )


def build(world: World) -> tuple[list[x509.Certificate], x509.Certificate]:
    """The bundle (in order) and the leaf of `world`."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in world.roots]
    roots = [
        _ca(f"root-{i}", k, s, None) for i, (k, s) in enumerate(zip(keys, world.roots, strict=True))
    ]
    bundle = [r for r, kept in zip(roots, world.roots_in_bundle[: len(roots)], strict=True) if kept]
    if world.renewed is not None:
        again = _ca("root-0", keys[0], CASpec(window=world.renewed), None)
        bundle = [again, *bundle] if world.renewed_first else [*bundle, again]
    issuers = {
        f"root:{i}": (r.subject, k) for i, (r, k) in enumerate(zip(roots, keys, strict=True))
    }
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    issuers["foreign"] = (_name("foreign"), foreign_key)
    issuers["impostor"] = (_name("root-0"), foreign_key)
    if world.intermediate is not None:
        key = ec.generate_private_key(ec.SECP256R1())
        intermediate = _ca("intermediate", key, world.intermediate, issuers["root:0"])
        issuers["intermediate"] = (intermediate.subject, key)
        if world.intermediate_in_bundle:
            bundle.append(intermediate)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        "alice",
        leaf_key,
        None if world.issuer == "self" else issuers[world.issuer],
        world.leaf_window,
        world.leaf_eku,
        is_ca=world.leaf_is_ca,
        key_usage="certsign" if world.leaf_is_ca else "absent",
    )
    if world.leaf_in_bundle or not bundle:
        bundle.append(leaf)
    return bundle, leaf


def pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# -- Go's rules -----------------------------------------------------------------------------


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    # isValid: now.Before(NotBefore) or now.After(NotAfter) is Expired.
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _usage_allows_clients(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool({CLIENT, ANY} & set(usage))


def _signed_by(cert: x509.Certificate, parent: x509.Certificate) -> bool:
    """CheckSignatureFrom: a v3 parent needs basicConstraints with cA; a keyUsage, if any,
    must have keyCertSign; then the signature."""
    try:
        constraints = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False  # all certificates here are v3
    if not constraints.ca:
        return False
    try:
        if not parent.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def go_verdict(
    bundle: list[x509.Certificate], leaf: x509.Certificate, now: dt.datetime
) -> str | None:
    """None if Go accepts `leaf` for client auth with `bundle` as roots, else the reason."""
    if now < leaf.not_valid_before_utc:
        return pv.NOT_YET_VALID
    if now > leaf.not_valid_after_utc:
        return pv.EXPIRED
    if any(der(c) == der(leaf) for c in bundle):  # opts.Roots.contains(c)
        chains = [[leaf]]
    else:
        # buildChains with roots only: parents by name (findPotentialParents), signature,
        # then the root's isValid (its dates; a failure is the error if no chain is found).
        chains, error = [], None
        for root in bundle:
            if root.subject != leaf.issuer or not _signed_by(leaf, root):
                continue
            if not _valid_at(root, now):
                error = pv.CA_OUTSIDE_VALIDITY
                continue
            chains.append([leaf, root])
        if not chains:
            return error or pv.UNKNOWN_AUTHORITY
    # checkChainForKeyUsage: every certificate of some chain allows client auth.
    if not any(all(_usage_allows_clients(c) for c in chain) for chain in chains):
        return pv.NOT_FOR_CLIENTS
    return None


def library_verdict(
    bundle: list[x509.Certificate], leaf: x509.Certificate, now: dt.datetime
) -> str | None:
    trust = pv.load_trust(pem(bundle))
    try:
        pv.verify_client_certificate(trust, [der(leaf)], now)
    except pv.ClientCertificateError as exc:
        return str(exc)
    return None
