"""`tenant-proxy certs init` and `tenant-proxy kubeconfig`, run as the installed console script.

The certificates are checked by what they are (subject, issuer signature, usages, SANs) and by
use: a real TLS handshake with client-certificate verification, and real kubectl authenticating
to the emulator with a kubeconfig the CLI wrote.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tenant_proxy import pki
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import kubectl_binary
from tenant_proxy.kubeconfig import read_credentials, write_kubeconfig


def cli() -> str:
    script = Path(sys.executable).parent / "tenant-proxy"
    assert script.exists(), "the tenant-proxy console script is not installed in this venv"
    return str(script)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([cli(), *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `certs init` shared by the tests that only read its output (key generation is slow)."""
    out = tmp_path_factory.mktemp("certs")
    run(
        "certs",
        "init",
        str(out),
        "--client",
        "alice:tenant-a-devs",
        "--client",
        "bob:tenant-b-devs,readers",
        "--client",
        "carol",
    )
    return out


# --- certs init ---------------------------------------------------------------------------------


def test_certs_init_writes_ca_server_and_one_pair_per_client(certs: Path) -> None:
    names = {p.name for p in certs.iterdir()}
    pairs = ("ca", "server", "alice", "bob", "carol")
    assert names == {f"{n}.{ext}" for n in pairs for ext in ("crt", "key")}


def test_certs_init_keys_are_readable_by_their_owner_only(certs: Path) -> None:
    for key in certs.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key.name


def test_client_certificate_names_user_in_cn_and_group_in_o(certs: Path) -> None:
    assert pki.subject_identity(load(certs / "alice.crt")) == ("alice", ("tenant-a-devs",))


def test_client_certificate_carries_every_group(certs: Path) -> None:
    assert pki.subject_identity(load(certs / "bob.crt")) == ("bob", ("tenant-b-devs", "readers"))
    assert pki.subject_identity(load(certs / "carol.crt")) == ("carol", ())


def test_client_certificates_are_signed_by_the_ca_for_client_auth(certs: Path) -> None:
    ca = load(certs / "ca.crt")
    for name in ("alice", "bob", "carol"):
        cert = load(certs / f"{name}.crt")
        cert.verify_directly_issued_by(ca)
        assert usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_server_certificate_has_default_sans_for_local_use(certs: Path) -> None:
    server = load(certs / "server.crt")
    server.verify_directly_issued_by(load(certs / "ca.crt"))
    assert usages(server) == {ExtendedKeyUsageOID.SERVER_AUTH}
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_certs_init_host_options_become_the_server_sans(tmp_path: Path) -> None:
    run(
        "certs",
        "init",
        str(tmp_path),
        "--host",
        "tenant-proxy.tenant-proxy.svc",
        "--host",
        "10.0.0.7",
    )
    server = load(tmp_path / "server.crt")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["tenant-proxy.tenant-proxy.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]


async def test_certs_init_output_completes_a_mutual_tls_handshake(certs: Path) -> None:
    # The files work together as the proxy uses them: server.crt for 127.0.0.1, client
    # certificates verified against ca.crt; the server reads the caller from the peer cert.
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs / "ca.crt")
    server_ctx.load_cert_chain(certs / "server.crt", certs / "server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: asyncio.Future[tuple[str, tuple[str, ...]]] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen.set_result(pki.subject_identity(x509.load_der_x509_certificate(der)))
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=certs / "ca.crt")
    client_ctx.load_cert_chain(certs / "bob.crt", certs / "bob.key")
    async with server:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_ctx), timeout=10
        )
        assert await asyncio.wait_for(seen, timeout=10) == ("bob", ("tenant-b-devs", "readers"))
        writer.close()


# --- kubeconfig ---------------------------------------------------------------------------------


def mint_kubeconfig(certs: Path, out: Path, *extra: str) -> Path:
    run(
        "kubeconfig",
        "--user",
        "dave",
        "--group",
        "tenant-a-devs",
        "--group",
        "readers",
        "--server",
        "https://127.0.0.1:9443",
        "--ca-cert",
        str(certs / "ca.crt"),
        "--ca-key",
        str(certs / "ca.key"),
        "--out",
        str(out),
        *extra,
    )
    return out


def test_kubeconfig_certificate_names_the_user_and_groups(certs: Path, tmp_path: Path) -> None:
    creds = read_credentials(mint_kubeconfig(certs, tmp_path / "dave.kubeconfig"))
    assert creds.server == "https://127.0.0.1:9443"
    assert creds.client_cert_pem is not None
    assert creds.client_key_pem is not None
    cert = x509.load_pem_x509_certificate(creds.client_cert_pem)
    assert pki.subject_identity(cert) == ("dave", ("tenant-a-devs", "readers"))
    cert.verify_directly_issued_by(load(certs / "ca.crt"))
    assert usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_kubeconfig_trusts_the_client_ca_unless_told_otherwise(certs: Path, tmp_path: Path) -> None:
    default = read_credentials(mint_kubeconfig(certs, tmp_path / "a.kubeconfig"))
    assert default.ca_pem == (certs / "ca.crt").read_bytes()
    other_ca = tmp_path / "serving-ca.crt"
    other_ca.write_bytes(pki.new_ca("serving").cert_pem)
    told = read_credentials(
        mint_kubeconfig(certs, tmp_path / "b.kubeconfig", "--server-ca", str(other_ca))
    )
    assert told.ca_pem == other_ca.read_bytes()


def test_kubeconfig_file_is_private_and_honours_days(certs: Path, tmp_path: Path) -> None:
    path = mint_kubeconfig(certs, tmp_path / "short.kubeconfig", "--days", "2")
    assert path.stat().st_mode & 0o777 == 0o600
    pem = read_credentials(path).client_cert_pem
    assert pem is not None
    lifetime = x509.load_pem_x509_certificate(pem).not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1) < lifetime <= dt.timedelta(days=2)


@pytest.fixture
async def bare_emulator() -> AsyncIterator[Emulator]:
    em = Emulator()
    await em.start()
    try:
        yield em
    finally:
        await em.stop()


async def kubectl_async(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    # Awaited, not blocking: the emulator serves on this same event loop.
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / "kube-cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(kubeconfig.parent)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_authenticates_with_the_minted_kubeconfig(
    bare_emulator: Emulator, tmp_path: Path
) -> None:
    # The API server (here the emulator) trusts this CA for clients, as a cluster trusts the
    # proxy's; kubectl then reports the identity the certificate carries.
    bare_emulator.ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    out = tmp_path / "erin.kubeconfig"
    await asyncio.to_thread(
        run,
        "kubeconfig",
        "--user",
        "erin",
        "--group",
        "tenant-b-devs",
        "--server",
        bare_emulator.url,
        "--ca-cert",
        str(tmp_path / "ca.crt"),
        "--ca-key",
        str(tmp_path / "ca.key"),
        "--out",
        str(out),
    )
    # The user: RBAC's refusal names it.
    code, _, stderr = await kubectl_async(out, "get", "pods", "-n", "default")
    assert code != 0
    assert 'User "erin" cannot list resource "pods"' in stderr
    # The group: a binding for the group alone lets the same kubeconfig list.
    await bare_emulator.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "devs-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "tenant-b-devs"}
            ],
        }
    )
    code, _, stderr = await kubectl_async(out, "get", "pods", "-n", "default")
    assert code == 0, stderr


# --- check: files, credentials, the API server's answer, the proxy's RBAC -----------------------

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Emulator]:
    """The demo world's API server: user tenant-proxy holds deploy/clusterrole.yaml's rights."""
    from tenant_proxy.demo import demo_world

    em = Emulator(seed_objects=demo_world())
    await em.start()
    try:
        yield em
    finally:
        await em.stop()


def check_config(directory: Path, upstream: Path | None) -> Path:
    ca = pki.new_ca()
    ca.write(directory / "ca.crt", directory / "ca.key")
    pki.issue_server_cert(ca, ["127.0.0.1"]).write(directory / "s.crt", directory / "s.key")
    doc: dict[str, object] = {
        "tls": {
            "cert_file": str(directory / "s.crt"),
            "key_file": str(directory / "s.key"),
            "client_ca_file": str(directory / "ca.crt"),
        },
        "upstream": {"kubeconfig": str(upstream)} if upstream else {},
    }
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


async def check(config: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TENANT_PROXY_", "KUBECONF"))}
    proc = await asyncio.create_subprocess_exec(
        cli(),
        "check",
        "--config",
        str(config),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def missing_lines(output: str) -> set[str]:
    return {line for line in output.splitlines() if line.startswith("missing: ")}


async def test_check_passes_with_the_deployed_rights(cluster: Emulator, tmp_path: Path) -> None:
    upstream = cluster.write_kubeconfig(tmp_path / "upstream.kubeconfig", "tenant-proxy")
    code, output = await check(check_config(tmp_path, upstream))
    assert code == 0, output
    assert f"upstream credential from kubeconfig {upstream}, context 'emulator'" in output
    # A v1.24 API server (as the emulator) lets only admins ask who they are.
    assert f"ok: {cluster.url} answers; the proxy is unnamed (SelfSubjectReview" in output
    assert missing_lines(output) == set()
    assert "ok: RBAC" in output


async def test_check_names_each_missing_permission_and_exits_1(
    cluster: Emulator, tmp_path: Path
) -> None:
    role = cluster.get(RBAC, "ClusterRole", "tenant-proxy")
    assert role is not None
    for rule in role["rules"]:
        rule["resources"] = [r for r in rule["resources"] if r != "persistentvolumes"]
    await cluster.apply(role)
    upstream = cluster.write_kubeconfig(tmp_path / "upstream.kubeconfig", "tenant-proxy")
    code, output = await check(check_config(tmp_path, upstream))
    assert code == 1, output
    assert missing_lines(output) == {
        f"missing: the proxy may not {verb} persistentvolumes (deploy/clusterrole.yaml)"
        for verb in ("get", "list", "watch")
    }


async def test_check_merges_a_kubeconfig_list_and_honours_context(
    cluster: Emulator, tmp_path: Path
) -> None:
    # a: cluster, user tenant-proxy, current-context "proxy". b: user someone, a context
    # "other" on a's cluster, and its own current-context, which must not win (client-go's
    # rule: the first file that sets it).
    a = cluster.kubeconfig("tenant-proxy")
    a["contexts"] = [{"name": "proxy", "context": {"cluster": "emulator", "user": "tenant-proxy"}}]
    a["current-context"] = "proxy"
    b = cluster.kubeconfig("someone")
    b["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # a's "emulator" wins
    b["contexts"] = [{"name": "other", "context": {"cluster": "emulator", "user": "someone"}}]
    b["current-context"] = "other"
    first = write_kubeconfig(tmp_path / "a.kubeconfig", a)
    second = write_kubeconfig(tmp_path / "b.kubeconfig", b)
    config = check_config(tmp_path, None)
    env = {"KUBECONFIG": f"{first}:{tmp_path / 'absent'}:{second}"}

    code, output = await check(config, env=env)
    assert code == 0, output
    assert "context 'proxy', user 'tenant-proxy'" in output

    code, output = await check(config, "--context", "other", env=env)
    assert code == 1, output
    assert "context 'other', user 'someone'" in output
    assert f"ok: {cluster.url} answers" in output
    assert "missing: the proxy may not list namespaces (deploy/clusterrole.yaml)" in output


async def test_check_of_an_unusable_credential_is_one_line_exit_2(tmp_path: Path) -> None:
    code, output = await check(check_config(tmp_path, tmp_path / "absent.kubeconfig"))
    assert code == 2
    assert output.strip().splitlines() == [
        f"tenant-proxy: upstream.kubeconfig: {tmp_path / 'absent.kubeconfig'}: "
        "No such file or directory"
    ]


def test_required_rights_are_every_rule_of_the_deployed_roles() -> None:
    from tenant_proxy.rbac_check import Permission, deployed_roles, permissions

    wanted = permissions(deployed_roles())
    assert Permission("list", "", "persistentvolumes") in wanted
    assert Permission("create", "authorization.k8s.io", "subjectaccessreviews") in wanted
    assert Permission("impersonate", "authentication.k8s.io", "userextras", "scopes") in wanted
    lease = Permission("get", "coordination.k8s.io", "leases", namespace="kube-node-lease")
    assert lease in wanted
    assert lease.describe() == (
        "the proxy may not get leases.coordination.k8s.io in namespace kube-node-lease"
    )
    assert len(wanted) == len(set(wanted))
    clusterrole = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "deploy" / "clusterrole.yaml").read_text()
    )
    assert set(permissions([clusterrole])) <= set(wanted)


def test_every_file_setting_is_named_by_its_field() -> None:
    from tenant_proxy.settings_file import parse_settings
    from tenant_proxy.startup import file_fields

    settings = parse_settings(
        {
            "tls": {"cert_file": "/s.crt", "key_file": "/s.key"},
            "upstream": {"kubeconfig": "/k"},
            "authentication": {
                "oidc": [{"issuer_url": "https://i", "audiences": ["a"], "jwks_file": "/j"}]
            },
        },
        environ={},
    )
    assert file_fields(settings) == [
        ("tls.cert_file", Path("/s.crt")),
        ("tls.key_file", Path("/s.key")),
        ("upstream.kubeconfig", Path("/k")),
        ("authentication.oidc.0.jwks_file", Path("/j")),
    ]
