"""`tenant-proxy`: serve, check, demo, emulator, certs, kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import yaml

from tenant_proxy import pki
from tenant_proxy.config import Settings
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig
from tenant_proxy.settings_file import ConfigError, load_settings, masked
from tenant_proxy.startup import StartupError, check_files, check_ports, check_tls

EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 1


def fail(message: str) -> int:
    """A start-up fault: one line, exit 2, no traceback."""
    print(f"tenant-proxy: {message}", file=sys.stderr)
    return EXIT_CONFIG


def settings_from(args: argparse.Namespace) -> Settings:
    settings = load_settings(Path(args.config))
    if args.context:
        upstream = settings.upstream.model_copy(update={"context": args.context})
        settings = settings.model_copy(update={"upstream": upstream})
    return settings


async def _credentials_usable(settings: Settings) -> None:
    from tenant_proxy.upstream import Upstream

    upstream = Upstream(settings.upstream)
    try:
        await upstream.start()
    finally:
        await upstream.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from tenant_proxy import shared_metrics

    # First: the imports below bring in prometheus-client, which reads the variable once.
    inherited_metrics_dir = shared_metrics.forget_inherited()

    from tenant_proxy.observability.logs import setup_logging
    from tenant_proxy.workers import run_workers

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail(f"config error: {exc}")
    workers = args.workers or settings.workers
    try:
        check_files(settings)
        check_tls(settings)
        check_ports(settings, reuse_port=workers > 1)
        if workers > 1:
            # Each worker would fail alone, in its own process: find out here, once.
            asyncio.run(_credentials_usable(settings))
    except StartupError as exc:
        return fail(str(exc))
    setup_logging(settings.observability.log_level, settings.observability.audit_file)
    if inherited_metrics_dir is not None:
        logging.getLogger("tenant_proxy.cli").warning(
            "ignoring %s=%s: with --workers, tenant-proxy uses a private directory of its own",
            shared_metrics.ENV,
            inherited_metrics_dir,
        )
    try:
        return run_workers(settings, workers, Path(args.config))
    except StartupError as exc:
        return fail(str(exc))


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail(f"config error: {exc}")
    if args.offline:
        print(yaml.safe_dump(masked(settings), sort_keys=False), end="")
        return 0
    try:
        check_files(settings)
        check_tls(settings)
        return asyncio.run(_check_upstream(settings))
    except StartupError as exc:
        return fail(str(exc))


async def _check_upstream(settings: Settings) -> int:
    """Credentials, an answer from the API server, and the RBAC the proxy lacks (one line each)."""
    from tenant_proxy import rbac_check
    from tenant_proxy.upstream import Upstream, UpstreamError

    upstream = Upstream(settings.upstream)
    try:
        await upstream.start()
        print(f"ok: files; upstream credential from {upstream.credentials.where}")
        try:
            identity = await rbac_check.whoami(upstream)
            print(f"ok: {upstream.base} answers; the proxy is {identity}")
            lacking = await rbac_check.missing(
                upstream, rbac_check.permissions(rbac_check.deployed_roles())
            )
        except UpstreamError as exc:
            print(f"upstream: {exc}")
            return EXIT_CHECK_FAILED
    finally:
        await upstream.close()
    for permission in lacking:
        print(f"missing: {permission.describe()} (deploy/clusterrole.yaml)")
    if not lacking:
        print("ok: RBAC: every right of deploy/clusterrole.yaml and role-node-leases.yaml")
    return EXIT_CHECK_FAILED if lacking else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tenant_proxy.demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None, args.port)


def cmd_emulator(args: argparse.Namespace) -> int:
    from tenant_proxy.emulator.standalone import run

    return run(args.listen, Path(args.dir), [Path(s) for s in args.seed or []])


def cmd_certs_init(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    ca = pki.new_ca()
    ca.write(out / "ca.crt", out / "ca.key")
    server = pki.issue_server_cert(ca, args.host or ["localhost", "127.0.0.1"])
    server.write(out / "server.crt", out / "server.key")
    for spec in args.client or []:
        user, _, groups = spec.partition(":")
        pair = pki.issue_client_cert(ca, user, [g for g in groups.split(",") if g])
        pair.write(out / f"{user}.crt", out / f"{user}.key")
    print(f"wrote CA, server certificate and {len(args.client or [])} client certificates to {out}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    ca = pki.KeyPair.read(Path(args.ca_cert), Path(args.ca_key))
    pair = pki.issue_client_cert(ca, args.user, args.group or [], days=args.days)
    server_ca = Path(args.server_ca).read_bytes() if args.server_ca else ca.cert_pem
    config = build_kubeconfig(
        args.server,
        server_ca,
        user=args.user,
        client_cert_pem=pair.cert_pem,
        client_key_pem=pair.key_pem,
    )
    write_kubeconfig(Path(args.out), config)
    print(f"wrote {args.out} for user {args.user}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenant-proxy",
        description="Tenant-aware reverse proxy for kube-apiserver.",
    )
    parser.add_argument(
        "--version", action="version", version=f"tenant-proxy {version('tenant-proxy')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    context_help = "context of the upstream kubeconfig (overrides upstream.context)"

    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument("--config", required=True, help="YAML settings file")
    p.add_argument("--workers", type=int, default=0, help="processes sharing the port")
    p.add_argument("--context", help=context_help)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "check",
        help="check files, upstream credentials, the API server's answer and the proxy's RBAC",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--context", help=context_help)
    p.add_argument(
        "--offline",
        action="store_true",
        help="only validate the config file and print it, secrets masked",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="emulator + proxy + kubeconfigs for three tenants")
    p.add_argument("--dir", help="where to write kubeconfigs (default: a temporary folder)")
    p.add_argument("--port", type=int, default=0, help="tenant listener port (default: free)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("emulator", help="run the in-memory API server emulator")
    p.add_argument("--listen", default="127.0.0.1:6443")
    p.add_argument("--dir", required=True, help="where ca.crt, ca.key, admin.kubeconfig go")
    p.add_argument("--seed", action="append", help="multi-document YAML to load (repeatable)")
    p.set_defaults(func=cmd_emulator)

    certs = sub.add_parser("certs", help="development certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    p = certs_sub.add_parser("init", help="a CA, a server certificate and client certificates")
    p.add_argument("dir")
    p.add_argument("--host", action="append", help="server certificate SAN (repeatable)")
    p.add_argument("--client", action="append", help="USER[:GROUP,GROUP] (repeatable)")
    p.set_defaults(func=cmd_certs_init)

    p = sub.add_parser("kubeconfig", help="mint a client certificate and write a kubeconfig")
    p.add_argument("--user", required=True)
    p.add_argument("--group", action="append")
    p.add_argument("--server", required=True, help="the proxy's URL")
    p.add_argument("--ca-cert", required=True, help="client CA certificate")
    p.add_argument("--ca-key", required=True, help="client CA key")
    p.add_argument("--server-ca", help="CA of the proxy's serving certificate (default: --ca-cert)")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_kubeconfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
