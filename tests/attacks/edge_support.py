"""What the edge tests share: the demo with short edge limits, raw TLS clients, metric samples."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tenant_proxy import pki
from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig

GENEROUS = 60.0  # seconds to wait for something that must happen (never asserted on)


class EdgeDemo(Demo):
    """The demo with some `limits` replaced (short clocks, small caps)."""

    def __init__(self, directory: Path, limits: dict[str, Any]) -> None:
        super().__init__(directory)
        self._limits = limits

    def settings(self, upstream: Path) -> Settings:
        base = super().settings(upstream)
        return base.model_copy(update={"limits": base.limits.model_copy(update=self._limits)})

    @property
    def address(self) -> tuple[str, int]:
        assert self.proxy is not None
        host, _, port = self.proxy.tenant_url.removeprefix("https://").rpartition(":")
        return host, int(port)

    def sample(self, name: str, **labels: str) -> float:
        assert self.proxy is not None
        value = self.proxy.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def client_tls(self, pair: pki.KeyPair | None = None) -> ssl.SSLContext:
        """A client context trusting the proxy, presenting `pair` if given."""
        ctx = ssl.create_default_context(cadata=self.client_ca.cert_pem.decode())
        if pair is not None:
            cert, key = self.dir / "client.crt", self.dir / "client.key"
            cert.write_bytes(pair.cert_pem)
            key.write_bytes(pair.key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx

    def cert_kubeconfig(self, name: str, pair: pki.KeyPair, token: str | None = None) -> Path:
        """A kubeconfig presenting `pair` (whatever signed it), and `token` too if given."""
        assert self.proxy is not None
        config = build_kubeconfig(
            self.proxy.tenant_url,
            self.client_ca.cert_pem,
            user=name,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
            token=token,
        )
        return write_kubeconfig(self.dir / f"{name}.kubeconfig", config)

    async def connect(
        self, pair: pki.KeyPair | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.address
        return await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self.client_tls(pair)), GENEROUS
        )

    def alice(self) -> pki.KeyPair:
        return pki.issue_client_cert(self.client_ca, "alice", ["tenant-a-devs"])

    def bob(self) -> pki.KeyPair:
        return pki.issue_client_cert(self.client_ca, "bob", ["tenant-b-devs"])


@asynccontextmanager
async def edge_demo(directory: Path, **limits: Any) -> AsyncIterator[EdgeDemo]:
    demo = EdgeDemo(directory, limits)
    await demo.start()
    try:
        yield demo
    finally:
        await demo.stop()


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Read until the proxy closes the connection (True), or GENEROUS seconds pass (False)."""
    try:
        async with asyncio.timeout(GENEROUS):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return True


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS)
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    return code, await asyncio.wait_for(reader.readexactly(length), GENEROUS)


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip stream inflating to `inflated_mib` MiB of zeros, about 1/1000 of that in size.

    Built fast: after a full flush the compressor restarts from the same state, so one MiB's
    segment repeats. It has no trailer: nobody should ever inflate it to the end.
    """
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + segment * (inflated_mib - 1)
