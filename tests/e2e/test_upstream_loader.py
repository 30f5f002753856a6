"""kubernetes_asyncio's loaders run in a child process, never in the serving process.

The serving process must not hold the library (~64 MiB resident if imported); the child that
runs it must not outlive a hanging plugin or a cancelled start, must not take secrets in its
argv or leave key material on disk, and its failures are one line like every credential error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from test_upstream_credentials import EXEC_API, exec_kubeconfig

from tenant_proxy import pki, upstream_credentials, upstream_loader_process
from tenant_proxy.config import UpstreamSettings
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig
from tenant_proxy.upstream_credentials import CredentialError, UpstreamCredentials
from tenant_proxy.upstream_loader_process import LoaderFailure, run_loader, run_loader_sync

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

# An exec plugin that records who ran it (its parent is the loader child) and then prints a
# token, or hangs: its pid and its parent's argv go to files next to it.
RECORDING_PLUGIN = """\
import json, os, pathlib, sys, time
here = pathlib.Path(sys.argv[1])
with open(here / "plugin.pids", "a") as runs:
    runs.write(f"{os.getpid()}\\n")
(here / "loader.argv").write_bytes(pathlib.Path(f"/proc/{os.getppid()}/cmdline").read_bytes())
if sys.argv[2] == "hang":
    time.sleep(3600)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": os.environ["PLUGIN_TOKEN"]}}))
"""
SECRET = "plugin-secret-0f9e8d"

# Starts the demo (emulator and proxy: its upstream user has an inline client certificate and
# key, read by the loader child), reads through the proxy's upstream session, loads and renews
# an exec plugin's credential, and reports which kubernetes_asyncio modules it holds.
SERVE_PATH = """\
import asyncio, json, sys
from pathlib import Path
import tenant_proxy.cli, tenant_proxy.server, tenant_proxy.workers
from tenant_proxy.config import UpstreamSettings
from tenant_proxy.demo import Demo
from tenant_proxy.upstream_credentials import UpstreamCredentials

async def main(directory: Path, exec_kubeconfig: Path) -> None:
    demo = Demo(directory)
    await demo.start()
    try:
        code, _ = await demo.proxy.upstream.json_call("GET", "/api/v1/namespaces")
        exec_user = UpstreamCredentials(UpstreamSettings(kubeconfig=exec_kubeconfig), environ={})
        first = await exec_user.authorization()
        renewed = await exec_user.renew(first)
    finally:
        await demo.stop()
    held = sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes_asyncio")
    print(json.dumps({"code": code, "first": first, "renewed": renewed, "held": held}))

asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
"""


def recording_kubeconfig(directory: Path, mode: str) -> Path:
    script = directory / "plugin.py"
    script.write_text(RECORDING_PLUGIN)
    user = {
        "exec": {
            "apiVersion": EXEC_API,
            "command": sys.executable,
            "args": [str(script), str(directory), mode],
            "env": [{"name": "PLUGIN_TOKEN", "value": SECRET}],
            "interactiveMode": "Never",
        }
    }
    ca = pki.new_ca().cert_pem
    return exec_kubeconfig(directory / "upstream.kubeconfig", "https://127.0.0.1:1", ca, user)


def gone(pid: int) -> bool:
    """Whether `pid` has exited (reaped, or a zombie whose new parent has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def listing(directory: Path) -> tuple[int, list[Path]]:
    """A directory's permission bits and entries."""
    return stat.S_IMODE(directory.stat().st_mode), list(directory.iterdir())


async def wait_for(path: Path) -> str:
    async with asyncio.timeout(60):
        while not text_of(path):
            await asyncio.sleep(0.05)
    return text_of(path)


@pytest.mark.slow
async def test_serving_process_holds_no_kubernetes_asyncio(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    kubeconfig = recording_kubeconfig(plugin_dir, "token")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVE_PATH,
        str(tmp_path / "demo"),
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["code"] == 200  # the proxy's own credential, loaded by the child, works
    assert report["first"] == f"Bearer {SECRET}"
    assert report["renewed"] is False  # the plugin gave the same token again: it ran again
    assert len(text_of(plugin_dir / "plugin.pids").split()) == 2
    assert report["held"] == []


@pytest.mark.slow
async def test_hanging_plugin_fails_the_start_and_dies_with_its_loader(tmp_path: Path) -> None:
    kubeconfig = recording_kubeconfig(tmp_path, "hang")
    credentials = UpstreamCredentials(
        UpstreamSettings(kubeconfig=kubeconfig), environ={}, loader_timeout=5
    )
    with pytest.raises(CredentialError) as failed:
        await credentials.load()
    text = str(failed.value)
    assert "\n" not in text
    assert f"kubeconfig {kubeconfig}, context 'emulator', user 'proxy'" in text
    assert "did not finish within 5 s" in text
    pid = int(text_of(tmp_path / "plugin.pids"))
    async with asyncio.timeout(60):
        while not gone(pid):
            await asyncio.sleep(0.05)


async def test_cancelled_start_kills_the_loader_and_its_plugin(tmp_path: Path) -> None:
    kubeconfig = recording_kubeconfig(tmp_path, "hang")
    credentials = UpstreamCredentials(UpstreamSettings(kubeconfig=kubeconfig), environ={})
    start = asyncio.ensure_future(credentials.load())
    pid = int(await wait_for(tmp_path / "plugin.pids"))
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    async with asyncio.timeout(60):
        while not gone(pid):
            await asyncio.sleep(0.05)


async def test_secrets_reach_the_loader_by_pipe_and_no_key_stays_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plugin's secret (its env in the kubeconfig) is not in the loader's argv.
    kubeconfig = recording_kubeconfig(tmp_path, "token")
    credentials = UpstreamCredentials(UpstreamSettings(kubeconfig=kubeconfig), environ={})
    assert await credentials.authorization() == f"Bearer {SECRET}"
    argv = (tmp_path / "loader.argv").read_bytes()
    assert b"upstream_loader" in argv  # it is the loader's argv the plugin recorded
    assert SECRET.encode() not in argv
    assert str(kubeconfig).encode() not in argv

    # An inline client key: the library writes it to a file of the child's temporary
    # directory, gone with the child; the proxy's copy is gone once ssl has loaded it.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ca = pki.new_ca()
    client = pki.issue_client_cert(ca, "tenant-proxy")
    config = build_kubeconfig(
        "https://127.0.0.1:1",
        ca.cert_pem,
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
    )
    with_key = write_kubeconfig(tmp_path / "key.kubeconfig", config)
    credentials = UpstreamCredentials(UpstreamSettings(kubeconfig=with_key), environ={})
    await credentials.load()
    assert credentials.ssl_context is not None
    assert len(credentials.ssl_context.get_ca_certs()) == 1
    assert listing(tmp_path / "tmp")[1] == []
    assert listing(Path(upstream_credentials._private_dir())) == (0o700, [])


CRASHING_LOADER = (
    "import sys; sys.stdin.read(); "
    "sys.stderr.write('Traceback (most recent call last):\\n  ...\\nRuntimeError: broken\\n'); "
    "sys.exit(3)"
)


@pytest.mark.slow
async def test_a_loader_that_dies_or_hangs_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        upstream_loader_process, "LOADER_ARGV", (sys.executable, "-c", CRASHING_LOADER)
    )
    with pytest.raises(
        LoaderFailure, match=r"^the credential loader failed: RuntimeError: broken$"
    ):
        await run_loader({}, 60)
    with pytest.raises(LoaderFailure, match="RuntimeError: broken"):
        run_loader_sync({}, 60)
    kubeconfig = recording_kubeconfig(tmp_path, "token")
    # As in a serving process, which holds no kubernetes_asyncio: construction asks the child.
    monkeypatch.delitem(sys.modules, "kubernetes_asyncio.client")
    with pytest.raises(CredentialError) as failed:
        UpstreamCredentials(UpstreamSettings(kubeconfig=kubeconfig), environ={})
    assert str(failed.value) == (
        f"upstream.kubeconfig: {kubeconfig}: the credential loader failed: RuntimeError: broken"
    )

    pid_file = tmp_path / "sleeper.pid"
    sleeper = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(3600)"
    )
    monkeypatch.setattr(upstream_loader_process, "LOADER_ARGV", (sys.executable, "-c", sleeper))
    with pytest.raises(LoaderFailure, match="did not finish within 2 s"):
        run_loader_sync({}, 2)
    assert gone(int(pid_file.read_text()))
    os.unlink(pid_file)
    with pytest.raises(LoaderFailure, match="did not finish within 2 s"):
        await run_loader({}, 2)
    assert gone(int(pid_file.read_text()))


def static_kubeconfig(directory: Path) -> tuple[Path, pki.KeyPair, pki.KeyPair]:
    """A kubeconfig whose user has an inline client certificate and key (no plugin)."""
    ca, client = pki.new_ca(), pki.new_ca()
    config = build_kubeconfig(
        "https://127.0.0.1:1",
        ca.cert_pem,
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
    )
    return write_kubeconfig(directory / "static.kubeconfig", config), ca, client


def test_construction_reads_here_only_where_the_library_is_resident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test runner holds kubernetes_asyncio, so a construction (files only, no plugin)
    reads here, with the child's very answer; a construction that may run a plugin never does."""
    assert "kubernetes_asyncio.client" in sys.modules
    static, ca, client = static_kubeconfig(tmp_path)
    request = {"kubeconfigs": [str(static)], "field": "upstream.kubeconfig", "context": None}
    from_child = run_loader_sync({**request, "run_plugins": False}, 60)
    assert base64.b64decode(from_child["loaded"]["ca"]) == ca.cert_pem
    assert base64.b64decode(from_child["loaded"]["cert"]) == client.cert_pem
    assert base64.b64decode(from_child["loaded"]["key"]) == client.key_pem

    def no_child(_request: object, _within: float) -> dict[str, object]:
        raise AssertionError("a child was started")

    monkeypatch.setattr(upstream_credentials, "run_loader_sync", no_child)
    here = upstream_credentials._construction_answer({**request, "run_plugins": False}, 60)
    assert here == from_child
    with pytest.raises(AssertionError, match="a child was started"):
        upstream_credentials._construction_answer({**request, "run_plugins": True}, 60)
    credentials = UpstreamCredentials(UpstreamSettings(kubeconfig=static), environ={})
    assert credentials.server == "https://127.0.0.1:1"


async def test_the_library_used_again_here_is_not_handed_the_loaders_removed_files(
    tmp_path: Path,
) -> None:
    """The library remembers the files it writes by content: after a construction here, its
    next load of the same material in this process gets files that exist."""
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import load_kube_config

    static, ca, client = static_kubeconfig(tmp_path)
    UpstreamCredentials(UpstreamSettings(kubeconfig=static), environ={})
    cfg = Configuration()
    await load_kube_config(config_file=str(static), client_configuration=cfg)
    assert file_bytes(cfg.ssl_ca_cert) == ca.cert_pem
    assert file_bytes(cfg.cert_file) == client.cert_pem


def file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()
