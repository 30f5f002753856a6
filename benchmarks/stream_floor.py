"""The floor under a watch's memory: a bare aiohttp server holding streams open, nothing else.

It serves TLS exactly as the proxy's listener does (`tenant_proxy.tls.build_context`: the
proxy's certificate and client CA, any client certificate accepted at the handshake, no session
tickets), on uvloop, with aiohttp's request handling (`handler_cancellation` on, as the proxy
runs it). Every request is answered with a 200 chunked JSON head and then nothing, until the
client leaves. What one open stream costs here is what any watch served this way costs before
the proxy keeps anything of its own: OpenSSL's connection state, uvloop's transport and read
buffer, aiohttp's connection, request and response.

Run: python -m benchmarks.stream_floor --tls-dir DIR (DIR holds server.crt, server.key, ca.crt);
prints `floor ready at https://127.0.0.1:PORT`, stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from benchmarks import common
from tenant_proxy import loop
from tenant_proxy.config import TLSSettings
from tenant_proxy.tls import build_context


async def _hold(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)
    await asyncio.Event().wait()  # until the client leaves (its handler is cancelled)
    return response


async def _serve(tls_dir: Path) -> None:
    context = build_context(
        TLSSettings(
            cert_file=tls_dir / "server.crt",
            key_file=tls_dir / "server.key",
            client_ca_file=tls_dir / "ca.crt",
        )
    )
    app = web.Application()
    app.router.add_get("/{tail:.*}", _hold)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"floor ready at https://127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


@dataclass
class FloorProcess:
    process: common.Process
    url: str


def start_floor(workdir: Path, tls_dir: Path) -> FloorProcess:
    """The floor server in its own process, serving TLS with the files in `tls_dir`."""
    argv = [sys.executable, "-m", "benchmarks.stream_floor", "--tls-dir", str(tls_dir)]
    process = common.Process("stream-floor", argv, workdir)
    match = process.wait_line(r"floor ready at (\S+)", timeout=60)
    return FloorProcess(process, match.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream_floor")
    parser.add_argument("--tls-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    loop.run(_serve(args.tls_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
