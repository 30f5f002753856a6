"""`tenant-proxy emulator` as a process: credentials written, ready line, clean stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tenant_proxy.emulator.standalone import split_listen
from tenant_proxy.emulator.testing import kubectl_async

WORLD = Path(__file__).parents[2] / "tenant_proxy" / "emulator" / "data" / "reference-world.yaml"


async def test_standalone_serves_the_seeded_world_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from tenant_proxy.emulator.standalone import run; from pathlib import Path;"
        f"sys.exit(run('127.0.0.1:0', Path({str(tmp_path)!r}), [Path({str(WORLD)!r})]))",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"ready" in line
        assert b"https://127.0.0.1:" in line
        written = await asyncio.to_thread(lambda: {p.name for p in tmp_path.iterdir()})
        assert written >= {"ca.crt", "ca.key", "admin.kubeconfig"}
        result = await kubectl_async(
            tmp_path / "admin.kubeconfig", "get", "ns", "team-a-dev", "-o", "name"
        )
        assert result.stdout.strip() == "namespace/team-a-dev", result.stderr
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:6443", ("127.0.0.1", 6443)),
        ("[::1]:8443", ("::1", 8443)),
        (":7000", ("127.0.0.1", 7000)),
    ],
)
def test_listen_address_parsing(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


def test_listen_address_without_port_is_refused() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_listen("localhost")
