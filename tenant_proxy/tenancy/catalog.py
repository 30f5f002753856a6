"""The tenant catalog: the tenants of the three admin-owned sources as they stand, and which
namespace label ties a namespace to a tenant. Pure state: the index feeds it what its informers
read, and asks it who the tenants are."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.model import Tenant
from tenant_proxy.tenancy.settings import TenancySettings, TenantSettings

log = logging.getLogger("tenant_proxy.index")

Parse = Callable[[Mapping[str, Any]], Tenant]


class TenantCatalog:
    """Config-file tenants, Tenant CRs and Capsule Tenants, each keyed by object name."""

    def __init__(self, settings: TenancySettings) -> None:
        self._label = settings.namespace_label
        self._config = sources.tenants_from_settings(settings.tenants, self._label)
        self._crs: dict[str, Tenant] = {}
        self._capsule: dict[str, Tenant] = {}
        # With Capsule, its label is the one its webhook enforces on tenant-created namespaces:
        # it wins over ours, which a Capsule tenant owner could otherwise set on its own
        # namespaces (unless Capsule's forbiddenLabels covers it).
        self.label_keys: tuple[str, ...] = (
            (sources.CAPSULE_NAMESPACE_LABEL, self._label) if settings.capsule else (self._label,)
        )

    def tenants(self) -> list[Tenant]:
        return [*self._config, *self._crs.values(), *self._capsule.values()]

    def set_config(self, tenants: list[TenantSettings]) -> bool:
        """Adopt the config file's tenants after a reload; whether anything changed."""
        fresh = sources.tenants_from_settings(tenants, self._label)
        if fresh == self._config:
            return False
        self._config = fresh
        return True

    def apply_cr(self, key: str, obj: Mapping[str, Any] | None) -> bool:
        """A Tenant CR added, changed (`obj`) or deleted (None); whether a tenant changed."""
        return _apply(self._crs, key, obj, lambda o: sources.tenant_from_cr(o, self._label))

    def apply_capsule(self, key: str, obj: Mapping[str, Any] | None) -> bool:
        """As `apply_cr`, for a Capsule Tenant."""
        return _apply(self._capsule, key, obj, sources.tenant_from_capsule)


def _apply(table: dict[str, Tenant], key: str, obj: Mapping[str, Any] | None, parse: Parse) -> bool:
    before = table.get(key)
    if obj is None:
        table.pop(key, None)
    else:
        try:
            table[key] = parse(obj)
        except Exception as exc:
            # A broken definition grants nothing (fail closed) and says why.
            log.error("tenant %s refused: %s", key, exc)
            table.pop(key, None)
    return table.get(key) != before  # status or annotation updates change no tenant


def namespace_owner(
    namespaces: Iterable[tuple[str, Mapping[str, str]]], label_keys: tuple[str, ...]
) -> dict[str, str]:
    """Each labelled namespace's tenant label value (`namespaces`: name and labels). The first
    label key present decides, known tenant or not: in Capsule mode a namespace with Capsule's
    label is that Capsule tenant's or nobody's, never ours by a label its owner may set on it."""
    owner: dict[str, str] = {}
    for name, labels in namespaces:
        for key in label_keys:
            if key in labels:
                owner[name] = labels[key]
                break
    return owner


def tenancy_labels_changed(
    old: Mapping[str, str] | None, new: Mapping[str, str] | None, label_keys: tuple[str, ...]
) -> bool:
    """Whether a namespace's coming, going or relabelling can move it between tenants."""
    if old is None or new is None:
        return True
    return any(old.get(k) != new.get(k) for k in label_keys)
