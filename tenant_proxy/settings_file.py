"""Reading the settings: one YAML file, validated once at start, with environment overrides.

Validation errors name the field and the problem (`tenancy.tenants.0.name: Field required`),
so `tenant-proxy serve` and `check` can print one clear line and exit 2.
Environment overrides (`TENANT_PROXY_<SECTION>__<FIELD>`) exist for paths and secrets, so a
ConfigMap holds the shape and a Secret or the Deployment supplies what must not be in it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tenant_proxy.config import Settings


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and the problem."""


ENV_PREFIX = "TENANT_PROXY_"
_SECRET_HINTS = ("token", "key", "secret", "password")


def _apply_env(doc: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """`TENANT_PROXY_UPSTREAM__TOKEN_FILE=/x` sets upstream.token_file, `TENANT_PROXY_WORKERS=4`
    sets workers (values are YAML-parsed)."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue  # another tool's variable (TENANT_PROXY_E2E_KUBECONFIG, ...)
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a mapping")
        node[path[-1]] = yaml.safe_load(raw)
    return doc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


def parse_settings(doc: Any, environ: dict[str, str] | None = None) -> Settings:
    """Validate a decoded YAML document (plus environment overrides) into Settings."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("(top level): must be a mapping")
    doc = _apply_env(doc, dict(os.environ if environ is None else environ))
    try:
        return Settings.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def load_settings(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate a config file; relative paths in it are relative to the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    settings: Settings = _absolutise(parse_settings(doc, environ), path.parent.resolve())
    return settings


def _absolutise(model: BaseModel, base: Path) -> Any:
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path):
            # normpath, not resolve: a symlinked path (/var/run) stays as the operator wrote it.
            updates[name] = Path(os.path.normpath(base / value.expanduser()))
        elif isinstance(value, BaseModel):
            updates[name] = _absolutise(value, base)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            updates[name] = [_absolutise(v, base) for v in value]
    return model.model_copy(update=updates) if updates else model


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration with secret-looking values masked, for `check`."""
    dumped: dict[str, Any] = _mask(settings.model_dump(mode="json"))
    return dumped


def _mask(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, key) for v in node]
    is_file = key.endswith("_file") or key.endswith("kubeconfig")
    if node and not is_file and any(h in key.lower() for h in _SECRET_HINTS):
        return "***"
    return node
