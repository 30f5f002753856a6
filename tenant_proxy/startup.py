"""Start-up checks: every fault of the environment is one line naming the field or the path.

`tenant-proxy serve` runs them before it starts anything (and its workers), `check` too: a
missing or unreadable file, TLS material that does not load, a port in use, an upstream
credential the proxy cannot use. Each is a `StartupError`; the CLI prints it and exits 2.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tenant_proxy.config import ListenerSettings, Settings


class StartupError(Exception):
    """The proxy cannot start as configured: the message names the field or path."""


def file_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, Path]]:
    """Every file the settings name, with its dotted field (`tls.cert_file`)."""
    found: list[tuple[str, Path]] = []
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        where = f"{prefix}{name}"
        if isinstance(value, Path):
            found.append((where, value))
        elif isinstance(value, BaseModel):
            found.extend(file_fields(value, f"{where}."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(file_fields(item, f"{where}.{i}."))
    return found


def listeners(settings: Settings) -> list[tuple[str, ListenerSettings]]:
    named = [("listener.address", settings.listener)]
    named.append(("admin.listener.address", settings.admin.listener))
    if settings.observability.metrics is not None:
        named.append(("observability.metrics.address", settings.observability.metrics))
    return named


def check_files(settings: Settings) -> None:
    """Every named file can be read; the audit file (if any) can be appended to."""
    for field, path in file_fields(settings):
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise StartupError(f"{field}: {path}: {exc.strerror or exc}") from None
    audit = settings.observability.audit_file
    if audit not in (None, "-"):
        try:
            with open(audit, "a"):
                pass
        except OSError as exc:
            raise StartupError(f"observability.audit_file: {audit}: {exc.strerror}") from None


def check_tls(settings: Settings) -> None:
    """The serving certificate and key load together; the client CA bundle loads."""
    tls = settings.tls
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise StartupError(
            f"tls.cert_file {tls.cert_file} / tls.key_file {tls.key_file}: "
            f"not a certificate and its key in PEM: {exc}"
        ) from None
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        except (ssl.SSLError, ValueError) as exc:
            raise StartupError(
                f"tls.client_ca_file: {tls.client_ca_file}: not a PEM CA bundle: {exc}"
            ) from None


def check_ports(settings: Settings, reuse_port: bool) -> None:
    """Every fixed listener address can be bound now (it is released again at once)."""
    for field, where in listeners(settings):
        if where.port != 0:
            try_bind(field, where, reuse_port)


def try_bind(field: str, where: ListenerSettings, reuse_port: bool) -> None:
    try:
        infos = socket.getaddrinfo(where.host or None, where.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise StartupError(f"{field}: {where.address}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise listen_error(field, where.address, exc) from None


def listen_error(field: str, address: str, exc: OSError) -> StartupError:
    # aiohttp rewords the message; the errno says it plainly ("Address already in use").
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StartupError(f"{field}: cannot listen on {address}: {reason}")
