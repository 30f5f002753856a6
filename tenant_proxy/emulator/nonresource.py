"""Non-resource paths: health checks, /version, discovery, OpenAPI and the OpenID documents.

The documents themselves come from discovery.py, openapi.py and the identity TokenIssuer; this
module only maps paths to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tenant_proxy.emulator import discovery, errors, openapi
from tenant_proxy.emulator.identity import TokenIssuer
from tenant_proxy.emulator.resources import Registry

HEALTH_CHECKS = (
    "ping",
    "log",
    "etcd",
    "informer-sync",
    "poststarthook/start-kube-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/priority-and-fairness-config-consumer",
    "poststarthook/priority-and-fairness-filter",
    "poststarthook/start-apiextensions-informers",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
    "poststarthook/bootstrap-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
    "poststarthook/priority-and-fairness-config-producer",
    "poststarthook/start-cluster-authentication-info-controller",
    "poststarthook/start-kube-aggregator-informers",
    "poststarthook/apiservice-registration-controller",
    "poststarthook/apiservice-status-available-controller",
    "poststarthook/kube-apiserver-autoregistration",
    "autoregister-completion",
    "poststarthook/apiservice-openapi-controller",
)


def health(parts: list[str], query: Mapping[str, str]) -> web.Response:
    """/healthz, /livez, /readyz (and one named check), with `?verbose` as the real server."""
    endpoint = parts[0]
    checks = [c for c in HEALTH_CHECKS if endpoint == "readyz" or c not in ("informer-sync",)]
    if endpoint == "readyz":
        checks.append("shutdown")
    if len(parts) > 1:
        check = "/".join(parts[1:])
        if check not in checks:
            raise errors.resource_not_found()
        return web.Response(text="ok", content_type="text/plain", charset="utf-8")
    if "verbose" not in query:
        return web.Response(text="ok", content_type="text/plain", charset="utf-8")
    lines = [f"[+]{c} ok" for c in checks] + [f"{endpoint} check passed", ""]
    return web.Response(text="\n".join(lines), content_type="text/plain", charset="utf-8")


def document(
    parts: list[str], registry: Registry, issuer: TokenIssuer, server_address: str, url: str
) -> Any:
    """The JSON document served at a non-resource path, or None (404)."""
    head = parts[0] if parts else ""
    if head == "version":
        return discovery.version_info()
    if head == "api":
        if len(parts) == 1:
            return discovery.api_versions(server_address)
        return discovery.resource_list(registry, "", parts[1]) if len(parts) == 2 else None
    if head == "apis":
        if len(parts) == 1:
            return discovery.api_group_list(registry)
        if len(parts) == 2:
            return discovery.api_group(registry, parts[1])
        return discovery.resource_list(registry, parts[1], parts[2])
    if head == "openapi":
        return openapi_document(parts[1:], registry)
    if parts == ["openid", "v1", "jwks"]:
        return issuer.jwks()
    if parts == [".well-known", "openid-configuration"]:
        return issuer.openid_configuration(url)
    return None


def openapi_document(parts: list[str], registry: Registry) -> Any:
    if parts == ["v2"]:
        return openapi.v2(registry)
    if parts == ["v3"]:
        return openapi.v3_root(registry)
    if len(parts) == 3 and parts[:2] == ["v3", "api"]:
        return openapi.v3_group(registry, "", parts[2])
    if len(parts) == 4 and parts[:2] == ["v3", "apis"]:
        return openapi.v3_group(registry, parts[2], parts[3])
    return None
