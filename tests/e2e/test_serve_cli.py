"""`tenant-proxy serve --workers 2` as an operator runs it: several processes on one port,
SIGHUP (or an edit of the config file) reloads the tenants, SIGTERM stops every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_kubectl import kubectl
from served import SCRIPT, free_port, serve

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.emulator_only]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Demo, Path, asyncio.subprocess.Process]]:
    async with serve(tmp_path, workers=2, metrics=False) as running:
        yield running.demo, running.config, running.proc


def kubeconfig(demo: Demo, config: Path, user: str, groups: list[str]) -> Path:
    """A client-certificate kubeconfig for the served tenant listener."""
    from tenant_proxy import pki
    from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig

    port = yaml.safe_load(config.read_text())["listener"]["address"].rsplit(":", 1)[1]
    pair = pki.issue_client_cert(demo.client_ca, user, groups)
    doc = build_kubeconfig(
        f"https://127.0.0.1:{port}",
        demo.client_ca.cert_pem,
        user=user,
        client_cert_pem=pair.cert_pem,
        client_key_pem=pair.key_pem,
    )
    return write_kubeconfig(demo.dir / f"served-{user}.kubeconfig", doc)


async def namespaces(path: Path) -> set[str] | None:
    result = await kubectl(path, "get", "namespaces", "-o", "name")
    return result.names() if result.code == 0 else None


async def test_workers_serve_filtered_and_sighup_reloads_tenants(
    served: tuple[Demo, Path, asyncio.subprocess.Process],
) -> None:
    demo, config, proc = served
    alice = kubeconfig(demo, config, "alice", ["tenant-a-devs"])
    zed = kubeconfig(demo, config, "zed", [])
    for _ in range(4):  # several connections: whichever worker answers, the answer is the same
        assert await namespaces(alice) == {"team-a-dev", "team-a-prod"}
    assert await namespaces(zed) is None  # in no tenant: the cluster's RBAC refuses

    doc = yaml.safe_load(config.read_text())
    doc["tenancy"]["tenants"].append(
        {"name": "team-z", "members": {"users": ["zed"]}, "namespaces": ["platform"]}
    )
    config.write_text(yaml.safe_dump(doc))
    proc.send_signal(signal.SIGHUP)
    async with asyncio.timeout(20):
        seen = 0
        while seen < 4:  # both workers reloaded: four answers in a row
            seen = seen + 1 if await namespaces(zed) == {"platform"} else 0

    # A broken edit is refused: the running configuration stays.
    config.write_text("tenancy: [unclosed\n")
    proc.send_signal(signal.SIGHUP)
    for _ in range(4):
        assert await namespaces(zed) == {"platform"}

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


# --- start-up faults: one line naming the field or path, exit 2, no traceback -------------------


def startup_config(directory: Path, **changes: object) -> Path:
    """A valid config (its upstream unreachable, which start-up does not need), then `changes`:
    dotted fields set to a value, or removed when the value is None."""
    from tenant_proxy import pki
    from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig

    ca = pki.new_ca()
    ca.write(directory / "ca.crt", directory / "ca.key")
    pki.issue_server_cert(ca, ["127.0.0.1"]).write(directory / "s.crt", directory / "s.key")
    upstream = write_kubeconfig(
        directory / "upstream.kubeconfig",
        build_kubeconfig("https://127.0.0.1:1", ca.cert_pem, token="proxy-token"),
    )
    doc: dict[str, Any] = {
        "listener": {"address": "127.0.0.1:0"},
        "admin": {"listener": {"address": "127.0.0.1:0"}},
        "tls": {
            "cert_file": str(directory / "s.crt"),
            "key_file": str(directory / "s.key"),
            "client_ca_file": str(directory / "ca.crt"),
        },
        "upstream": {"kubeconfig": str(upstream)},
        "observability": {"metrics": None, "audit_file": None},
    }
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


def serve_once(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANT_PROXY_", "KUBECONFIG"))}
    return subprocess.run(
        [str(SCRIPT), "serve", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("field", "value", "needles"),
    [
        (
            "upstream__kubeconfig",
            "missing.kubeconfig",
            ["upstream.kubeconfig", "missing.kubeconfig"],
        ),
        ("tls__client_ca_file", "missing-ca.crt", ["tls.client_ca_file", "missing-ca.crt"]),
        ("tls__cert_file", "missing.crt", ["tls.cert_file", "missing.crt"]),
        ("tls__key_file", "ca.crt", ["tls.key_file", "not a certificate and its key"]),
        ("tls__client_ca_file", "upstream.kubeconfig", ["tls.client_ca_file", "not a PEM CA"]),
        ("listener__adress", "127.0.0.1:1", ["listener.adress", "Extra inputs"]),
        ("upstream__context", "nowhere", ["context 'nowhere'", "nowhere"]),
        ("observability__audit_file", "/nonexistent/audit.log", ["observability.audit_file"]),
    ],
)
def test_configuration_fault_is_one_line_naming_the_field(
    tmp_path: Path, field: str, value: str, needles: list[str]
) -> None:
    changed = value if "/" in value or ":" in value else str(tmp_path / value)
    if field == "upstream__context":
        changed = value
    assert_one_line_exit_2(serve_once(startup_config(tmp_path, **{field: changed})), *needles)


def test_bad_yaml_is_one_line_with_its_position(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("listener: [unclosed\n")
    assert_one_line_exit_2(serve_once(config), str(config), "not valid YAML")


def test_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    # A directory where a file belongs: unreadable even to root (file modes are not).
    (tmp_path / "key-dir").mkdir()
    config = startup_config(tmp_path, tls__key_file=str(tmp_path / "key-dir"))
    assert_one_line_exit_2(serve_once(config), "tls.key_file", "key-dir", "Is a directory")


def test_anonymous_upstream_is_refused_naming_kubeconfig_context_and_user(tmp_path: Path) -> None:
    from tenant_proxy import pki
    from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig

    anonymous = write_kubeconfig(
        tmp_path / "anonymous.kubeconfig",
        build_kubeconfig("https://127.0.0.1:1", pki.new_ca().cert_pem, user="nobody"),
    )
    result = serve_once(startup_config(tmp_path, upstream__kubeconfig=str(anonymous)))
    assert_one_line_exit_2(
        result, str(anonymous), "context 'tenant-proxy', user 'nobody'", "anonymously"
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_one_line_naming_the_listener(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = startup_config(
            tmp_path,
            listener__address="127.0.0.1:0" if workers == "1" else f"127.0.0.1:{free_port()}",
            admin__listener__address=f"127.0.0.1:{port}",
        )
        result = serve_once(config, "--workers", workers)
    assert_one_line_exit_2(
        result, "admin.listener.address", f"127.0.0.1:{port}", "Address already in use"
    )


def test_version_names_the_installed_release() -> None:
    from importlib.metadata import version

    result = subprocess.run(
        [str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == f"tenant-proxy {version('tenant-proxy')}"
