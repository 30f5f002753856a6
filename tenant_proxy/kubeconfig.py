"""Write and read kubeconfig files (client certificates or bearer tokens, CA data embedded).

A leaf module shared by the proxy CLI, the demo, the emulator and the tests. `read_credentials`
reads only the simple files these write (tests and tools use it); the proxy's own upstream
identity is read by kubernetes_asyncio's loader (upstream_credentials.py: exec plugins, auth
providers, `KUBECONFIG` lists), which this leaf must not import.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_kubeconfig(
    server: str,
    ca_pem: bytes,
    name: str = "tenant-proxy",
    user: str = "user",
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A one-context kubeconfig as a dict."""
    auth: dict[str, str] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        auth["client-certificate-data"] = _b64(client_cert_pem)
        auth["client-key-data"] = _b64(client_key_pem)
    if token is not None:
        auth["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    """Write `config` to `path`, readable by its owner only (it holds keys or tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    return path


@dataclass(frozen=True)
class Credentials:
    """What a client needs to reach one cluster, read from a kubeconfig's current context."""

    server: str
    ca_pem: bytes | None
    client_cert_pem: bytes | None
    client_key_pem: bytes | None
    token: str | None
    insecure: bool = False


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key])
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


def read_credentials(path: Path, context: str | None = None) -> Credentials:
    """The current (or named) context's server, CA, client certificate and token."""
    doc = yaml.safe_load(path.read_text()) or {}
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ValueError(f"{path}: no current-context")
    ctx = _named(doc.get("contexts", []), ctx_name, "context")
    cluster = _named(doc.get("clusters", []), ctx["cluster"], "cluster")
    user = _named(doc.get("users", []), ctx["user"], "user")
    base = path.parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        client_cert_pem=_data_or_file(user, "client-certificate", base),
        client_key_pem=_data_or_file(user, "client-key", base),
        token=token,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )
