"""The tenant catalog: which label ties a namespace to a tenant, and tenants of the sources as
they come, change and go (a broken one grants nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from tenant_proxy.tenancy.catalog import TenantCatalog, namespace_owner, tenancy_labels_changed
from tenant_proxy.tenancy.settings import TenancySettings

OURS = "tenant-proxy.io/tenant"
CAPSULE = "capsule.clastix.io/tenant"
CAPSULE_MODE = (CAPSULE, OURS)


def test_a_namespace_with_capsules_label_is_that_tenants_or_nobodys() -> None:
    # Its owner may set our label too: Capsule's decides, even naming no known tenant.
    labelled = [
        ("capsule-ns", {CAPSULE: "gas", OURS: "oil"}),
        ("orphan-ns", {CAPSULE: "no-such-tenant", OURS: "oil"}),
        ("ours-ns", {OURS: "oil"}),
        ("bare-ns", {}),
    ]
    assert namespace_owner(labelled, CAPSULE_MODE) == {
        "capsule-ns": "gas",
        "orphan-ns": "no-such-tenant",
        "ours-ns": "oil",
    }


def test_without_capsule_its_label_means_nothing() -> None:
    labelled = [("ns", {CAPSULE: "gas"}), ("mine", {OURS: "oil", CAPSULE: "gas"})]
    assert namespace_owner(labelled, (OURS,)) == {"mine": "oil"}


def test_catalog_reads_capsules_label_first_only_in_capsule_mode() -> None:
    assert TenantCatalog(TenancySettings(capsule=True)).label_keys == CAPSULE_MODE
    assert TenantCatalog(TenancySettings()).label_keys == (OURS,)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (None, {OURS: "a"}, True),  # came
        ({OURS: "a"}, None, True),  # went
        ({OURS: "a"}, {OURS: "b"}, True),
        ({OURS: "a"}, {OURS: "a", "team": "x"}, False),  # another label: no tenant moves
        ({OURS: "a"}, {OURS: "a", CAPSULE: "gas"}, True),
    ],
)
def test_only_tenancy_labels_move_a_namespace(
    old: dict[str, str] | None, new: dict[str, str] | None, changed: bool
) -> None:
    assert tenancy_labels_changed(old, new, CAPSULE_MODE) is changed


def tenant_cr(spec: dict[str, Any], status: str = "") -> dict[str, Any]:
    return {"metadata": {"name": "t"}, "spec": spec, "status": {"phase": status}}


def test_a_tenant_cr_comes_changes_and_goes() -> None:
    catalog = TenantCatalog(TenancySettings())
    assert catalog.apply_cr("t", tenant_cr({"members": {"users": ["alice"]}}))
    assert [t.name for t in catalog.tenants()] == ["t"]
    # A status update changes no tenant.
    assert not catalog.apply_cr("t", tenant_cr({"members": {"users": ["alice"]}}, "Ready"))
    assert catalog.apply_cr("t", tenant_cr({"members": {"users": ["bob"]}}))
    assert catalog.apply_cr("t", None)
    assert catalog.tenants() == []


def test_a_broken_tenant_cr_grants_nothing() -> None:
    catalog = TenantCatalog(TenancySettings())
    catalog.apply_cr("t", tenant_cr({"members": {"users": ["alice"]}}))
    assert catalog.apply_cr("t", tenant_cr({"storageClasses": {"regex": "("}}))
    assert catalog.tenants() == []
