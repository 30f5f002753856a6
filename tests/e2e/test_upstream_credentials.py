"""The proxy's own credential from an `exec` plugin, as on EKS, GKE, AKS and OpenShift.

The plugin is a small Python script written here: it prints an ExecCredential whose token the
emulator accepts (a static token for user `tenant-proxy`, bound to the demo's ClusterRole), and
counts its runs in a file. The proxy's informers sync with it and a tenant's filtered list works;
the token is renewed before it expires, and once when the API server refuses it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import kubectl

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.types import UserInfo
from tenant_proxy.upstream_credentials import CredentialError

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.emulator_only]

PLUGIN = """\
import datetime, json, pathlib, sys
counter, lifetime = pathlib.Path(sys.argv[1]), int(sys.argv[2])
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
status = {"token": f"exec-token-{runs}"}
if lifetime:
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lifetime)
    status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                  "kind": "ExecCredential", "status": status}))
"""
EXEC_API = "client.authentication.k8s.io/v1"


def exec_kubeconfig(path: Path, server: str, ca: bytes, user: dict[str, Any]) -> Path:
    import base64

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "emulator",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": "proxy", "user": user}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "proxy"}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def plugin_user(directory: Path, lifetime: int) -> dict[str, Any]:
    script = directory / "plugin.py"
    script.write_text(PLUGIN)
    return {
        "exec": {
            "apiVersion": EXEC_API,
            "command": sys.executable,
            "args": [str(script), str(directory / "runs"), str(lifetime)],
            "interactiveMode": "Never",
        }
    }


class ExecDemo(Demo):
    """The demo with the proxy's upstream identity from an exec plugin's tokens."""

    def __init__(self, directory: Path, user: Callable[[Path], dict[str, Any]]) -> None:
        super().__init__(directory)
        self._user = user

    async def start_upstream(self) -> Path:
        await self.emulator.start()
        for run in range(1, 50):
            self.accept(f"exec-token-{run}")
        return exec_kubeconfig(
            self.dir / "upstream-exec.kubeconfig",
            self.emulator.url,
            self.emulator.ca_pem,
            self._user(self.dir),
        )

    def accept(self, token: str) -> None:
        self.emulator.authenticator.static_tokens[token] = UserInfo("tenant-proxy")

    def revoke(self, token: str) -> None:
        del self.emulator.authenticator.static_tokens[token]

    @property
    def runs(self) -> int:
        counter = self.dir / "runs"
        return int(counter.read_text()) if counter.exists() else 0


@pytest.fixture
async def long_lived(tmp_path: Path) -> AsyncIterator[ExecDemo]:
    demo = ExecDemo(tmp_path, lambda d: plugin_user(d, 3600))
    await demo.start()
    try:
        yield demo
    finally:
        await demo.stop()


async def pvs(kubeconfig: Path) -> set[str] | None:
    result = await kubectl(kubeconfig, "get", "persistentvolumes", "-o", "name")
    return result.names() if result.code == 0 else None


async def test_exec_plugin_credential_syncs_informers_and_serves_filtered_lists(
    long_lived: ExecDemo,
) -> None:
    assert long_lived.proxy is not None
    assert long_lived.proxy.index.synced
    assert await pvs(long_lived.dir / "alice.kubeconfig") == {"pv-a-data"}
    assert long_lived.runs == 1  # cached: one run for the informers and every request


async def test_refused_token_is_renewed_once_and_the_read_retried(long_lived: ExecDemo) -> None:
    alice = long_lived.dir / "alice.kubeconfig"
    assert await pvs(alice) == {"pv-a-data"}
    long_lived.revoke("exec-token-1")
    assert await pvs(alice) == {"pv-a-data"}
    assert long_lived.runs == 2
    assert await pvs(alice) == {"pv-a-data"}
    assert long_lived.runs == 2


async def test_expiring_token_is_renewed_before_it_expires(tmp_path: Path) -> None:
    # A 4 s token is renewed a fifth of its lifetime before it expires; no token is refused
    # meanwhile, so only its expiry can have made the plugin run again.
    demo = ExecDemo(tmp_path, lambda d: plugin_user(d, 4))
    await demo.start()
    try:
        alice = demo.dir / "alice.kubeconfig"
        async with asyncio.timeout(60):
            while demo.runs < 2:
                assert await pvs(alice) == {"pv-a-data"}
        demo.revoke("exec-token-1")
        assert await pvs(alice) == {"pv-a-data"}
    finally:
        await demo.stop()


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({}, "no token, client certificate or exec plugin credential"),
        ({"auth-provider": {"name": "azure", "config": {}}}, "auth-provider 'azure'"),
        (
            {"exec": {"apiVersion": EXEC_API, "command": "/nonexistent/plugin"}},
            "/nonexistent/plugin",
        ),
        (
            {"exec": {"apiVersion": EXEC_API, "command": "false"}},
            "exec: process returned 1",
        ),
        ({"tokenFile": "/nonexistent/token"}, "/nonexistent/token"),
    ],
    ids=["anonymous", "unsupported-provider", "missing-plugin", "failing-plugin", "token-file"],
)
async def test_unusable_credential_fails_start_naming_kubeconfig_context_and_user(
    tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    demo = ExecDemo(tmp_path, lambda _d: user)
    with pytest.raises(CredentialError) as failed:
        await demo.start()
    await demo.stop()
    text = str(failed.value)
    assert "\n" not in text
    assert f"kubeconfig {demo.dir / 'upstream-exec.kubeconfig'}" in text
    assert "context 'emulator', user 'proxy'" in text
    assert message in text
