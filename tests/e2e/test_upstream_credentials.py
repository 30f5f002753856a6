"""The proxy's own credential from an `exec` plugin, as on EKS, GKE, AKS and OpenShift.

The plugin is a small Python script written here: it prints an ExecCredential whose token the
emulator accepts (a static token for user `tenant-proxy`, bound to the demo's ClusterRole), and
counts its runs in a file. The proxy's informers sync with it and a tenant's filtered list works;
the token is renewed before it expires, and once when the API server refuses it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_kubectl import kubectl
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.types import UserInfo
from tenant_proxy.upstream_credentials import (
    CredentialError,
    first_current_context,
    kubeconfig_paths,
    renewal_time,
)

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


@pytest.mark.slow
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


# --- the pure rules -------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(dt.UTC)
)


@given(
    fetched=instants,
    lifetime=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=2)),
)
def test_renewal_comes_before_expiry_and_at_most_five_minutes_early(
    fetched: dt.datetime, lifetime: dt.timedelta
) -> None:
    expiry = fetched + lifetime
    renew = renewal_time(fetched, expiry)
    assert fetched <= renew <= expiry
    assert expiry - renew <= dt.timedelta(minutes=5)
    assert expiry - renew == min(dt.timedelta(minutes=5), lifetime / 5)


def test_kubeconfig_list_keeps_order_drops_empties_and_repeats() -> None:
    env = {"KUBECONFIG": "/a::/b:/a:~/c"}
    assert kubeconfig_paths(None, env) == ["/a", "/b", str(Path("~/c").expanduser())]
    assert kubeconfig_paths(Path("/explicit"), env) == ["/explicit"]
    assert kubeconfig_paths(None, {}) == []


def test_first_file_setting_current_context_wins() -> None:
    files = {"/a": {"clusters": []}, "/b": {"current-context": "b"}, "/c": {"current-context": "c"}}
    assert first_current_context(["/a", "/b", "/c"], files) == "b"
    assert first_current_context(["/a"], files) is None


# --- in-cluster: the projected token is re-read ---------------------------------------------------


async def test_in_cluster_token_is_read_again_when_refused(tmp_path: Path) -> None:
    from tenant_proxy import pki
    from tenant_proxy.config import UpstreamSettings
    from tenant_proxy.upstream_credentials import UpstreamCredentials

    (tmp_path / "ca.crt").write_bytes(pki.new_ca().cert_pem)
    (tmp_path / "token").write_text("projected-1")
    credentials = UpstreamCredentials(
        UpstreamSettings(in_cluster=True),
        environ={"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"},
        service_account_dir=tmp_path,
    )
    assert credentials.server == "https://[fd00::1]:6443"
    assert await credentials.authorization() == "Bearer projected-1"
    (tmp_path / "token").write_text("projected-2")  # the kubelet rotated it
    assert await credentials.renew("Bearer projected-1")
    assert await credentials.authorization() == "Bearer projected-2"
    # Another request refused with the old token finds it renewed already: no second read.
    (tmp_path / "token").write_text("projected-3")
    assert await credentials.renew("Bearer projected-1")
    assert await credentials.authorization() == "Bearer projected-2"


async def test_in_cluster_without_service_account_is_one_line(tmp_path: Path) -> None:
    from tenant_proxy.config import UpstreamSettings
    from tenant_proxy.upstream_credentials import UpstreamCredentials

    with pytest.raises(CredentialError, match="KUBERNETES_SERVICE_HOST is not set"):
        UpstreamCredentials(UpstreamSettings(in_cluster=True), environ={})
    credentials = UpstreamCredentials(
        UpstreamSettings(in_cluster=True),
        environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
        service_account_dir=tmp_path,
    )
    with pytest.raises(CredentialError, match=r"in-cluster ServiceAccount .*token file"):
        await credentials.load()


async def test_kubeconfig_token_file_is_relative_to_it_and_read_again(tmp_path: Path) -> None:
    from tenant_proxy import pki
    from tenant_proxy.config import UpstreamSettings
    from tenant_proxy.upstream_credentials import UpstreamCredentials

    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("file-token-1\n")
    kubeconfig = exec_kubeconfig(
        tmp_path / "upstream.kubeconfig",
        "https://127.0.0.1:1",
        pki.new_ca().cert_pem,
        {"tokenFile": "secrets/token"},
    )
    credentials = UpstreamCredentials(UpstreamSettings(kubeconfig=kubeconfig), environ={})
    assert await credentials.authorization() == "Bearer file-token-1"
    (tmp_path / "secrets" / "token").write_text("file-token-2\n")
    assert await credentials.renew("Bearer file-token-1")
    assert await credentials.authorization() == "Bearer file-token-2"


async def test_oidc_auth_provider_id_token_is_the_upstream_credential(tmp_path: Path) -> None:
    import time

    import jwt

    # The client does not verify an id-token, only reads its exp (refreshing it when near).
    id_token = jwt.encode(
        {"iss": "https://idp.invalid", "sub": "proxy", "exp": int(time.time()) + 3600},
        "not-a-secret-the-client-ever-checks",
        algorithm="HS256",
    )
    user = {
        "auth-provider": {
            "name": "oidc",
            "config": {
                "client-id": "tenant-proxy",
                "idp-issuer-url": "https://idp.invalid",
                "id-token": id_token,
            },
        }
    }
    demo = ExecDemo(tmp_path, lambda _d: user)
    demo.emulator.authenticator.static_tokens[id_token] = UserInfo("tenant-proxy")
    await demo.start()
    try:
        assert await pvs(demo.dir / "alice.kubeconfig") == {"pv-a-data"}
    finally:
        await demo.stop()
