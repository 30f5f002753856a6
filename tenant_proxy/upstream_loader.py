"""kubernetes_asyncio's kubeconfig and in-cluster loaders, run in a short-lived child process.

`import kubernetes_asyncio` (any submodule: the package's `__init__` imports every generated API
and model) would keep ~64 MiB resident in every serving process for its whole life, to read a
kubeconfig a few times. So the serving process (upstream_credentials.py) runs this module's
`main` in a child (upstream_loader_process.py) when it needs the library: at construction (which
server, which user; a static credential is loaded there too), when an exec plugin or auth
provider must run (start, renewal ahead of expiry, a 401, the provider's periodic check), and
for the in-cluster ServiceAccount at start.

Protocol: one JSON request on stdin, one JSON answer on stdout, then the child exits.
- request: `{"kubeconfigs": [...], "field", "context", "run_plugins", "provider_config"}` or
  `{"in_cluster": {"dir", "host", "port"}}`;
- answer: `{"fatal": line}` when the kubeconfig names no usable context or user, else `where`,
  `server`, `kind` (`static`, `exec`, `provider`), `token_file`, and either `loaded` (the
  Authorization value, TLS material as base64 contents, the exec credential's expiry, the auth
  provider's refreshed config) or `error` (one line, without `where`).
Secrets (tokens, keys, a provider's refresh token) travel through the pipes only: never argv,
never a file the child leaves behind (the library's inline material goes to a 0700 directory
removed as the child exits; its contents travel in the answer).

kubernetes_asyncio is imported by this module's functions only, so importing it loads nothing
of the library: they run in the child, or (at construction, where the library is resident
already) in the serving process itself (upstream_credentials._construction_answer). The rules
both sides share are in upstream_loader_process.py.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenant_proxy.upstream_loader_process import first_current_context, one_line

# Auth providers kubernetes_asyncio implements; others (azure, ...) would leave the user anonymous.
SUPPORTED_AUTH_PROVIDERS = frozenset({"oidc", "gcp"})
BEARER = "BearerToken"


class LoaderError(Exception):
    """One line for the answer's `error` (or `fatal`)."""


def _contents(path: str | None) -> str | None:
    """A TLS file's bytes as base64: the parent writes its own copy, as it loads files only."""
    if not path:
        return None
    return base64.b64encode(Path(path).read_bytes()).decode()


def _configuration_answer(cfg: Any, expiry: Any = None) -> dict[str, Any]:
    token = cfg.api_key.get(BEARER)
    return {
        "authorization": str(token) if token else None,
        "ca": _contents(cfg.ssl_ca_cert),
        "cert": _contents(cfg.cert_file),
        "key": _contents(cfg.key_file),
        "verify_ssl": bool(cfg.verify_ssl),
        "tls_server_name": cfg.tls_server_name or None,
        "proxy": cfg.proxy or None,
        "expiry": expiry.astimezone(dt.UTC).isoformat() if expiry is not None else None,
    }


async def _in_cluster(request: Mapping[str, Any]) -> dict[str, Any]:
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

    directory = Path(request["dir"])
    cfg = Configuration()
    try:
        InClusterConfigLoader(
            token_filename=str(directory / "token"),
            cert_filename=str(directory / "ca.crt"),
            environ={
                "KUBERNETES_SERVICE_HOST": request["host"],
                "KUBERNETES_SERVICE_PORT": request["port"],
            },
        ).load_and_set(cfg)
        return {"kind": "static", "loaded": _configuration_answer(cfg)}
    except (ConfigException, OSError, ValueError) as exc:
        return {"kind": "static", "error": one_line(exc)}


async def _kubeconfig(request: Mapping[str, Any], temp_dir: str) -> dict[str, Any]:
    import yaml
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.exec_provider import ExecProvider
    from kubernetes_asyncio.config.kube_config import KubeConfigLoader, KubeConfigMerger

    field, paths = request["field"], list(request["kubeconfigs"])
    named = os.pathsep.join(paths)
    try:
        merger = KubeConfigMerger(os.pathsep.join(paths))
    except (OSError, yaml.YAMLError, TypeError, AttributeError, KeyError) as exc:
        raise LoaderError(f"{field}: {named}: not a kubeconfig: {one_line(exc)}") from None
    context = request.get("context") or first_current_context(paths, merger.config_files)
    if not context:
        raise LoaderError(f"{field}: {named}: no current-context, and upstream.context is not set")
    where = f"kubeconfig {named}, context {context!r}"
    config: Any = merger.config
    try:
        ctx: Any = config["contexts"].get_with_name(context)["context"]
        user_name = ctx.safe_get("user")
        where += f", user {user_name!r}"
        cluster = config["clusters"].get_with_name(ctx["cluster"])["cluster"]
        server = str(cluster["server"]).rstrip("/")
        entry = config["users"].get_with_name(user_name, safe=True)
        if entry is None:
            raise LoaderError(f"{where}: the kubeconfig has no such user")
        user: Any = entry["user"]
        provider = user.safe_get("auth-provider")
        if provider is not None and request.get("provider_config") is not None:
            # The provider's config as the last check left it (a refreshed id-token and its
            # refresh token): the library refreshes in memory, and this child's memory goes.
            provider["config"] = request["provider_config"]
        loader = KubeConfigLoader(
            config_dict=config,
            active_context=context,
            config_base_path=None,
            temp_file_path=temp_dir,
        )
    except (ConfigException, AssertionError, KeyError, TypeError) as exc:
        raise LoaderError(f"{where}: {one_line(exc)}") from None
    # The library's order: an auth provider first, then an exec plugin, then a token.
    kind = "provider" if provider is not None else "exec" if "exec" in user else "static"
    answer: dict[str, Any] = {"where": where, "server": server, "kind": kind, "token_file": None}
    if "tokenFile" in user and kind == "static":
        # The loader reads it once; client-go re-reads it: so does the proxy. Relative to the
        # kubeconfig that names it, as the loader and client-go read it.
        answer["token_file"] = str(Path(os.path.dirname(user.path or "")) / user["tokenFile"])
    try:
        if provider is not None:
            name = provider.get("name") if isinstance(provider, dict) else None
            if name not in SUPPORTED_AUTH_PROVIDERS:
                raise LoaderError(
                    f"auth-provider {name!r} is not supported (use an exec plugin instead)"
                )
        if kind == "exec":
            ExecProvider(user["exec"])  # validates command and apiVersion before any run
        if kind != "static" and not request.get("run_plugins"):
            return answer
        cfg = Configuration()
        await loader.load_and_set(cfg)
        answer["loaded"] = _configuration_answer(cfg, getattr(loader, "exec_plugin_expiry", None))
        if provider is not None:
            answer["loaded"]["provider_config"] = provider.get("config")
    except LoaderError as exc:
        answer["error"] = str(exc)
    except (ConfigException, OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        answer["error"] = one_line(exc)
    return answer


async def answer(request: Mapping[str, Any]) -> dict[str, Any]:
    """What the library resolves for `request` (the protocol above)."""
    if "in_cluster" in request:
        return await _in_cluster(request["in_cluster"])
    temp_dir = tempfile.mkdtemp(prefix="tenant-proxy-loader-")
    try:
        return await _kubeconfig(request, temp_dir)
    except LoaderError as exc:
        return {"fatal": str(exc)}
    finally:
        _forget_files_in(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _forget_files_in(directory: str) -> None:
    """The library remembers each file it writes, by content, and hands it to its next load
    in the same process (`kube_config._temp_files`). Where the loader runs in a process that
    goes on (upstream_credentials._construction_answer), those in `directory`, about to be
    removed, are forgotten: else the next load of the same material there (the proxy's, or
    any other user of the library in that process) is handed a path that is gone."""
    kube_config = sys.modules.get("kubernetes_asyncio.config.kube_config")
    remembered = getattr(kube_config, "_temp_files", None)
    if isinstance(remembered, dict):
        inside = os.path.join(directory, "")
        for content, path in list(remembered.items()):
            if isinstance(path, str) and path.startswith(inside):
                del remembered[content]


def main() -> None:
    # The answer goes to the real stdout alone: whatever else writes to fd 1 (a library's
    # print, a warning) lands on stderr, which the parent reads only if there is no answer.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    request = json.loads(sys.stdin.read())
    result = asyncio.run(answer(request))
    out.write(json.dumps(result))
    out.close()


if __name__ == "__main__":
    main()
