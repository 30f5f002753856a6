"""The legacy (unaggregated) discovery documents: /api, /api/v1, /apis, /apis/<g>[/<v>], /version.

kubectl v1.37 first asks for aggregated discovery (`as=APIGroupDiscoveryList`); a server that
answers `Content-Type: application/json` with these documents is read as legacy discovery, as
client-go does with any v1.24 server.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any, Protocol

from tenant_proxy.emulator import metrics
from tenant_proxy.emulator.types import ResourceType


class ResourceTable(Protocol):
    """What discovery needs of the registry."""

    def all(self) -> list[ResourceType]: ...


# The real server's order of groups in /apis (by its group priorities); others follow by name.
GROUP_ORDER = (
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
)
BUILTIN_GROUPS = frozenset(("", *GROUP_ORDER))

VERSION_INFO = {
    "major": "1",
    "minor": "24+",
    "gitVersion": "v1.24.0-alpha.3",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-24T13:15:08Z",
    "goVersion": "go1.19.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def version_info() -> dict[str, str]:
    """`/version`, as the recorded server answered."""
    return dict(VERSION_INFO)


def api_versions(server_address: str) -> dict[str, Any]:
    """`/api`: the core group's versions and the address clients should use."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list(registry: ResourceTable) -> dict[str, Any]:
    """`/apis`: every named group with its versions, preferred version first."""
    versions = group_versions(registry.all())
    names = sorted((g for g in versions if g), key=_group_rank)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions[name]) for name in names],
    }


def api_group(registry: ResourceTable, group: str) -> dict[str, Any] | None:
    """`/apis/<group>`, or None when the group is not served."""
    versions = group_versions(registry.all()).get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def resource_list(registry: ResourceTable, group: str, version: str) -> dict[str, Any] | None:
    """`/api/v1` or `/apis/<group>/<version>`: an APIResourceList, or None when not served."""
    served = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not served:
        return None
    entries = [entry for rt in served for entry in resource_entries(rt)]
    head: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        # The real server leaves apiVersion out of the core group's list only.
        head["apiVersion"] = "v1"
    head["groupVersion"] = f"{group}/{version}" if group else version
    return {**head, "resources": sorted(entries, key=lambda e: str(e["name"]))}


# Built-in groups whose version priorities are not the kube-aware order.
_VERSION_PRIORITY = {"autoscaling": ("v2", "v1", "v2beta1", "v2beta2")}


def group_versions(types: Iterable[ResourceType]) -> dict[str, list[str]]:
    """Served versions per group, most preferred first."""
    found: dict[str, set[str]] = {}
    for rt in types:
        found.setdefault(rt.group, set()).add(rt.version)
    return {group: _ordered_versions(group, vs) for group, vs in found.items()}


def _ordered_versions(group: str, versions: set[str]) -> list[str]:
    fixed = _VERSION_PRIORITY.get(group, ())
    first = [v for v in fixed if v in versions]
    return first + sorted(versions - set(first), key=version_rank)


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def _group_rank(group: str) -> tuple[int, str]:
    if group in GROUP_ORDER:
        return GROUP_ORDER.index(group), ""
    if group == metrics.GROUP:
        # Its APIService's groupPriorityMinimum (100) ranks below custom resources' (1000).
        return len(GROUP_ORDER) + 1, group
    return len(GROUP_ORDER), group


_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_rank(version: str) -> tuple[int, int, int, str]:
    """Kube-aware order: GA before beta before alpha, higher numbers first, then by name."""
    match = _VERSION.match(version)
    if match is None:
        return 3, 0, 0, version
    major, stage, minor = match.groups()
    stability = {None: 0, "beta": 1, "alpha": 2}[stage]
    return stability, -int(major), -int(minor or 0), version


# Subresources whose discovery entry differs from "same kind, get/patch/update".
_SUBRESOURCES: dict[str, dict[str, Any]] = {
    "attach": {"kind": "PodAttachOptions", "verbs": ["create", "get"]},
    "binding": {"kind": "Binding", "verbs": ["create"]},
    "eviction": {"group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]},
    "exec": {"kind": "PodExecOptions", "verbs": ["create", "get"]},
    "finalize": {"verbs": ["update"]},
    "log": {"verbs": ["get"]},
    "portforward": {"kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
    "proxy": {
        "kind": "{kind}ProxyOptions",
        "verbs": ["create", "delete", "get", "patch", "update"],
    },
    "scale": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
    "token": {
        "group": "authentication.k8s.io",
        "version": "v1",
        "kind": "TokenRequest",
        "verbs": ["create"],
    },
}


def resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    """The APIResource entries of `rt`: the resource itself and each subresource."""
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": _singular_name(rt),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": sorted(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    if "watch" in rt.verbs:
        # Only what is kept in storage has a hash, and only that is watchable.
        main["storageVersionHash"] = storage_version_hash(rt)
    return [main, *(_subresource_entry(rt, sub) for sub in rt.subresources)]


def _subresource_entry(rt: ResourceType, sub: str) -> dict[str, Any]:
    shape = _SUBRESOURCES.get(sub, {})
    entry: dict[str, Any] = {
        "name": f"{rt.plural}/{sub}",
        "singularName": "",
        "namespaced": rt.namespaced,
    }
    if "group" in shape:
        entry["group"], entry["version"] = shape["group"], shape["version"]
    entry["kind"] = str(shape.get("kind", "{kind}")).format(kind=rt.kind)
    entry["verbs"] = list(shape.get("verbs", ["get", "patch", "update"]))
    return entry


def _singular_name(rt: ResourceType) -> str:
    # v1.24 leaves singularName empty for built-in types; CRDs publish theirs.
    return "" if rt.group in BUILTIN_GROUPS else rt.singular


def storage_version_hash(rt: ResourceType) -> str:
    """The real server's hash: base64 of the first 8 bytes of sha256("group/version/Kind")."""
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()
