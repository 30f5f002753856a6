"""The served resources: a built-in table plus whatever CustomResourceDefinitions register."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tenant_proxy.emulator import data_files
from tenant_proxy.emulator.types import KubeObject, ResourceType


def _strings(value: Any) -> tuple[str, ...]:
    """A list of names; anything else is a mistake in the data file (YAML 1.1 reads a bare
    `no` as false)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"builtin-resources.yaml: expected a list of strings, got {value!r}")
    return tuple(value)


def _resource_type(api_version: str, entry: Mapping[str, Any]) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    kind = str(entry["kind"])
    optional: dict[str, Any] = {
        field: _strings(entry[key])
        for key, field in (
            ("verbs", "verbs"),
            ("short", "short_names"),
            ("categories", "categories"),
            ("subresources", "subresources"),
        )
        if key in entry
    }
    return ResourceType(
        group=group,
        version=version,
        plural=str(entry["plural"]),
        singular=kind.lower(),
        kind=kind,
        namespaced=bool(entry.get("namespaced", False)),
        **optional,
    )


def _resource_types(group_versions: Sequence[Mapping[str, Any]]) -> tuple[ResourceType, ...]:
    return tuple(
        _resource_type(str(gv["groupVersion"]), entry)
        for gv in group_versions
        for entry in gv["resources"]
    )


_TABLE = data_files.load("builtin-resources.yaml")
BUILTIN: tuple[ResourceType, ...] = _resource_types(_TABLE["served"])
UNADVERTISED: tuple[ResourceType, ...] = _resource_types(_TABLE["unadvertised"])
"""Served but absent from discovery (see data/builtin-resources.yaml)."""


def crd_resource_types(crd: KubeObject) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves: one per served version."""
    spec: dict[str, Any] = crd.get("spec") or {}
    names: dict[str, Any] = spec.get("names") or {}
    kind = str(names.get("kind", ""))
    return [
        ResourceType(
            group=str(spec.get("group", "")),
            version=str(v["name"]),
            plural=str(names.get("plural", "")),
            singular=str(names.get("singular") or kind.lower()),
            kind=kind,
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=tuple(sorted((v.get("subresources") or {}).keys())),
        )
        for v in spec.get("versions") or []
        if v.get("served", True) and v.get("name")
    ]


class Registry:
    """Resource types by (group, version, plural); CRDs add and remove theirs at runtime."""

    def __init__(
        self,
        builtin: tuple[ResourceType, ...] = BUILTIN,
        unadvertised: tuple[ResourceType, ...] = UNADVERTISED,
    ) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._unadvertised = set(unadvertised)
        self._crd_types: dict[str, list[ResourceType]] = {}
        self._printer_columns: dict[ResourceType, list[dict[str, Any]]] = {}
        for rt in (*builtin, *unadvertised):
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def all(self) -> list[ResourceType]:
        """The advertised types (what discovery lists)."""
        return [rt for rt in self._types.values() if rt not in self._unadvertised]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The type an object with this apiVersion and kind belongs to (for apply and seeding)."""
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """Served versions per group, in first-registered order."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def is_custom(self, rt: ResourceType) -> bool:
        return rt in self._printer_columns

    def add_crd(self, crd: KubeObject) -> list[ResourceType]:
        """Start serving the CRD's versions (replacing those of an earlier revision)."""
        self.remove_crd(crd)
        types = crd_resource_types(crd)
        columns = {
            str(v.get("name")): list(v.get("additionalPrinterColumns") or [])
            for v in (crd.get("spec") or {}).get("versions") or []
        }
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
            self._printer_columns[rt] = columns.get(rt.version, [])
        self._crd_types[str(crd["metadata"]["name"])] = types
        return types

    def remove_crd(self, crd: KubeObject) -> None:
        for rt in self._crd_types.pop(str(crd["metadata"]["name"]), []):
            self._types.pop((rt.group, rt.version, rt.plural), None)
            self._printer_columns.pop(rt, None)

    def printer_columns(self, rt: ResourceType) -> list[dict[str, Any]] | None:
        """A custom resource's additionalPrinterColumns (None for built-in types)."""
        return self._printer_columns.get(rt)
