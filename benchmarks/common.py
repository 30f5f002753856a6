"""What every benchmark shares: worlds to seed, the emulator and proxy as separate processes,
TLS clients, percentiles and the figures table.

Emulator and proxy each run in their own process (own event loop); the load generator runs in
the benchmark process. The machine has 2 cores shared by all three (and by whatever else runs):
figures are relative (proxy beside a baseline measured in the same run), not absolute.

The emulator is started by `python -m benchmarks.common emulator` rather than `tenant-proxy
emulator --seed FILE`: the CLI parses seeds with PyYAML's pure-Python loader (~1 ms per object,
100 s for 100,000 objects), which alone would break the 3-minute bound. This launcher reads a
JSON seed with orjson and otherwise runs the same `Emulator` the CLI runs, on a plain asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import yaml

from tenant_proxy import pki
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig

TENANT_LABEL = "tenant-proxy.io/tenant"
CLI = Path(sys.executable).parent / "tenant-proxy"
REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# --- worlds (pure) ------------------------------------------------------------------------------


def tenant_name(i: int) -> str:
    return f"t{i:03d}"


def tenant_group(i: int) -> str:
    return f"{tenant_name(i)}-devs"


def namespace_name(i: int) -> str:
    return f"ns-{i:06d}"


def namespaces(count: int, tenants: int) -> list[dict[str, Any]]:
    """`count` namespaces, the i-th labelled for tenant i % tenants (each owns count/tenants)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace_name(i),
                "labels": {TENANT_LABEL: tenant_name(i % tenants)},
            },
        }
        for i in range(count)
    ]


def persistent_volumes(count: int, claim_namespaces: int) -> list[dict[str, Any]]:
    """`count` provisioned-looking PVs, the i-th bound into namespace i % claim_namespaces."""
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"pv-{i:06d}", "labels": {"topology.example.com/zone": "z1"}},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "10Gi"},
                "csi": {"driver": "csi.example.com", "volumeHandle": f"vol-{i:06d}"},
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "standard",
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "name": f"data-{i:06d}",
                    "namespace": namespace_name(i % claim_namespaces),
                },
            },
            "status": {"phase": "Bound"},
        }
        for i in range(count)
    ]


def proxy_rbac() -> list[dict[str, Any]]:
    """The tenant-proxy ClusterRole and its binding, exactly as in the demo world."""
    from tenant_proxy.demo import demo_world

    return [
        obj
        for obj in demo_world()
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding")
        and obj["metadata"]["name"] == "tenant-proxy"
    ]


def tenant_configs(count: int) -> list[dict[str, Any]]:
    """`count` tenants for the proxy's config, members by group `tNNN-devs`."""
    return [
        {"name": tenant_name(i), "members": {"groups": [tenant_group(i)]}} for i in range(count)
    ]


def viewer_binding(namespace: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant-view", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }


# --- processes ----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process whose stdout and stderr go to files in the work directory."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first log line matching `pattern` (the process's ready line)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if m := regex.search(line):
                    return m
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)  # a child's log file has nothing to wait on but time
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} not ready:\n{tail}")

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def client_ssl(ca_pem: bytes, pair: pki.KeyPair, where: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    where.mkdir(parents=True, exist_ok=True)
    pair.write(where / "tls.crt", where / "tls.key")
    ctx.load_cert_chain(where / "tls.crt", where / "tls.key")
    return ctx


@dataclass
class EmulatorProcess:
    """`python -m benchmarks.common emulator`: the emulator on its own event loop."""

    process: Process
    url: str
    ca: pki.KeyPair
    workdir: Path

    def ssl_for(self, user: str, groups: Sequence[str] = ()) -> ssl.SSLContext:
        """A client TLS context authenticating as `user` directly to the emulator."""
        pair = pki.issue_client_cert(self.ca, user, list(groups))
        return client_ssl(self.ca.cert_pem, pair, self.workdir / "clients" / f"emu-{user}")


def start_emulator(workdir: Path, objects: list[dict[str, Any]]) -> EmulatorProcess:
    directory = workdir / "emulator"
    directory.mkdir(parents=True, exist_ok=True)
    seed = directory / "seed.json"
    seed.write_bytes(orjson.dumps(objects))
    argv = [sys.executable, "-m", "benchmarks.common", "emulator", "--dir", str(directory)]
    process = Process("emulator", [*argv, "--seed-json", str(seed)], workdir)
    progress(f"emulator: seeding {len(objects)} objects")
    match = process.wait_line(r"emulator ready at (\S+)", timeout=120)
    ca = pki.KeyPair.read(directory / "ca.crt", directory / "ca.key")
    return EmulatorProcess(process, match.group(1), ca, workdir)


@dataclass
class ProxyProcess:
    """`tenant-proxy serve`: one worker in front of the emulator."""

    process: Process
    url: str
    metrics_url: str
    client_ca: pki.KeyPair
    workdir: Path

    def ssl_for(self, user: str, groups: Sequence[str] = ()) -> ssl.SSLContext:
        pair = pki.issue_client_cert(self.client_ca, user, list(groups))
        return client_ssl(self.client_ca.cert_pem, pair, self.workdir / "clients" / f"px-{user}")

    def wait_synced(self, timeout: float) -> float:
        """Seconds until /readyz says the tenancy index has synced."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            url = f"{self.metrics_url}/readyz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
                if r.status == 200:
                    return time.monotonic() - start
            if self.process.popen.poll() is not None:
                break
            time.sleep(0.1)  # /readyz is the proxy's only sync signal to an outside process
        tail = self.process.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"proxy not synced within {timeout}s:\n{tail}")


def upstream_kubeconfig(directory: Path, emulator: EmulatorProcess) -> Path:
    """The proxy's own credentials for the emulator: user `tenant-proxy` (RBAC in the seed)."""
    own = pki.issue_client_cert(emulator.ca, "tenant-proxy")
    return write_kubeconfig(
        directory / "upstream.kubeconfig",
        build_kubeconfig(
            emulator.url,
            emulator.ca.cert_pem,
            user="tenant-proxy",
            client_cert_pem=own.cert_pem,
            client_key_pem=own.key_pem,
        ),
    )


def start_proxy(
    workdir: Path,
    emulator: EmulatorProcess,
    tenants: list[dict[str, Any]],
    *,
    limits: dict[str, Any] | None = None,
    name: str = "proxy",
) -> ProxyProcess:
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    client_ca = pki.new_ca("bench-client-ca")
    client_ca.write(directory / "ca.crt", directory / "ca.key")
    server = pki.issue_server_cert(client_ca, ["127.0.0.1", "localhost"])
    server.write(directory / "server.crt", directory / "server.key")
    upstream = upstream_kubeconfig(directory, emulator)
    metrics_port = free_port()
    config = {
        "listener": {"address": "127.0.0.1:0"},
        "admin": {"listener": {"address": "127.0.0.1:0"}},
        "tls": {
            "cert_file": str(directory / "server.crt"),
            "key_file": str(directory / "server.key"),
            "client_ca_file": str(directory / "ca.crt"),
        },
        "upstream": {"kubeconfig": str(upstream)},
        "tenancy": {"tenants": tenants, "watch_tenant_crds": False, "sync_timeout_seconds": 60},
        "observability": {
            "metrics": {"address": f"127.0.0.1:{metrics_port}"},
            "log_level": "warning",
            # Audit lines are part of a request's cost; a file keeps them off the pipe.
            "audit_file": str(directory / "audit.log"),
        },
        "drain_seconds": 1,
        "limits": limits or {},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [str(CLI), "serve", "--config", str(path)]
    if command := os.environ.get("BENCH_PROXY_CMD"):
        # Measure a proposed change without editing the proxy: a wrapper taking the CLI's args.
        argv = [*command.split(), *argv[1:]]
    if profile := os.environ.get("BENCH_PROFILE"):
        # cProfile of the proxy process, written when it stops (SIGTERM drains cleanly).
        argv = [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            profile,
            "-m",
            "tenant_proxy.cli",
            *argv[1:],
        ]
    process = Process(name, argv, workdir)
    progress("proxy: starting")
    match = process.wait_line(r"tenant-proxy ready: tenant (\S+)", timeout=60)
    return ProxyProcess(
        process, match.group(1), f"http://127.0.0.1:{metrics_port}", client_ca, workdir
    )


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, contextlib.ExitStack]]:
    """A temporary directory and a stack that stops every process started in it."""
    with (
        tempfile.TemporaryDirectory(prefix="tenant-proxy-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        yield Path(tmp), stack


def started(stack: contextlib.ExitStack, proc: T) -> T:
    stack.callback(proc.process.stop)  # type: ignore[attr-defined]
    return proc


_T0 = time.monotonic()


def progress(message: str) -> None:
    """A line on stderr, so a slow phase shows where it is (the table goes to stdout)."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- client helpers -----------------------------------------------------------------------------


def session(ctx: ssl.SSLContext) -> aiohttp.ClientSession:
    """A keep-alive client session with no connection limit and no total timeout (watches)."""
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)


async def timed_get(s: aiohttp.ClientSession, url: str, accept: str = "application/json") -> float:
    """Seconds to the last byte of one GET; raises unless it is a 200."""
    start = time.perf_counter()
    async with s.get(url, headers={"Accept": accept}) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status} {body[:300]!r}")
    return time.perf_counter() - start


async def interleaved(
    pairs: Sequence[Callable[[], Awaitable[float]]], rounds: int, per_round: int
) -> list[list[float]]:
    """Samples of each callable, taken in alternating rounds so that a load spike from other
    processes on the machine lands on proxy and baseline alike."""
    samples: list[list[float]] = [[] for _ in pairs]
    for _ in range(rounds):
        for i, fn in enumerate(pairs):
            for _ in range(per_round):
                samples[i].append(await fn())
    return samples


async def throughput(fn: Callable[[], Awaitable[float]], concurrency: int, seconds: float) -> float:
    """Completed requests per second with `concurrency` requests in flight for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await fn()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop when installed (as the proxy itself runs)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


# --- output -------------------------------------------------------------------------------------


@dataclass
class Table:
    """scenario | proxy | baseline | ratio/added | target | met?"""

    title: str
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, scenario: str, proxy: str, baseline: str, delta: str, target: str, met: bool | None
    ) -> None:
        verdict = "-" if met is None else ("yes" if met else "NO")
        self.rows.append((scenario, proxy, baseline, delta, target, verdict))

    def add_latencies(
        self,
        scenario: str,
        proxy: Sequence[float],
        baseline: Sequence[float],
        *,
        baseline_note: str = "",
        ratio_at_most: float | None = None,
        added_at_most: float | None = None,
    ) -> None:
        """The p50 row (judged against the target given, if any) and the p99 row of a scenario
        measured both ways; the difference as a ratio, as time added, or both."""
        added_only = added_at_most is not None

        def delta(px: float, base: float, detailed: bool) -> str:
            if added_only:
                return f"+{ms(px - base)}"
            return f"{px / base:.2f}x" + (f" (+{ms(px - base)})" if detailed else "")

        px50, base50 = p50(proxy), p50(baseline)
        target, met = "-", None
        if ratio_at_most is not None:
            target, met = f"<= {ratio_at_most}x", px50 / base50 <= ratio_at_most
        elif added_at_most is not None:
            target, met = f"<= +{added_at_most * 1000:.0f} ms", px50 - base50 <= added_at_most
        detailed = ratio_at_most is None and not added_only
        self.add(
            f"{scenario} p50",
            ms(px50),
            ms(base50) + baseline_note,
            delta(px50, base50, detailed),
            target,
            met,
        )
        self.add(
            f"{scenario} p99",
            ms(p99(proxy)),
            ms(p99(baseline)),
            delta(p99(proxy), p99(baseline), False),
            "-",
            None,
        )

    def render(self) -> str:
        header = ("scenario", "proxy", "baseline", "ratio/added", "target", "met?")
        rows = [header, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

        def line(r: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        out = [f"## {self.title}", "", machine(), "", line(header), sep]
        out += [line(r) for r in self.rows]
        out += ["", *self.notes] if self.notes else []
        return "\n".join(out)


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores shared by "
        f"load generator, proxy and emulator (load average {load}); {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# --- the emulator launcher ----------------------------------------------------------------------


async def _serve_emulator(directory: Path, seed: list[dict[str, Any]]) -> None:
    from tenant_proxy.emulator.app import Emulator
    from tenant_proxy.emulator.standalone import write_credentials

    emulator = Emulator(seed_objects=seed)
    await emulator.start(0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    write_credentials(emulator, directory)
    print(f"emulator ready at {emulator.url}", flush=True)
    await stop.wait()
    await emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.common")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("emulator", help="the emulator seeded from a JSON array of objects")
    p.add_argument("--dir", required=True)
    p.add_argument("--seed-json", required=True)
    args = parser.parse_args(argv)
    seed = orjson.loads(Path(args.seed_json).read_bytes())
    asyncio.run(_serve_emulator(Path(args.dir), seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
