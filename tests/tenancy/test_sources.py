"""Tenants from their sources: one spec shape, refused whole when any part cannot be read."""

from __future__ import annotations

from typing import Any

import pytest

from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.model import Tenant, owns, view_for

OURS = "tenant-proxy.io/tenant"
CAPSULE = "capsule.clastix.io/tenant"


def cr(spec: dict[str, object], name: str = "t") -> dict[str, object]:
    return {
        "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"storageClasses": {"regex": "[a"}},
        {"priorityClasses": {"regex": "(unclosed"}},
        {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}},
        {"nodeSelector": {"matchLabels": {"bad key!": "v"}}},
        {"members": {"users": "alice"}},
        {"resources": [{"group": "x.io"}]},
        {"resources": [{"resource": "widgets", "fieldPath": "spec..owner"}]},
    ],
)
def test_a_spec_with_any_unreadable_part_is_refused_whole(spec: dict[str, object]) -> None:
    with pytest.raises(sources.TenantSpecError):
        sources.tenant_from_cr(cr(spec))


def test_every_tenant_sees_pvs_bound_into_its_namespaces_by_default() -> None:
    tenant = sources.tenant_from_cr(cr({"members": {"users": ["alice"]}}))
    assert GroupResource("", "persistentvolumes") in tenant.rules


def test_capsule_owners_become_members_and_allowed_lists_class_rules() -> None:
    capsule = {
        "metadata": {"name": "oil"},
        "spec": {
            "owners": [
                {"kind": "User", "name": "alice"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "name": "system:serviceaccount:ns:bot"},
            ],
            "nodeSelector": {"pool": "oil"},
            "storageClasses": {"allowed": ["gold"], "allowedRegex": "fast-.*"},
            "ingressOptions": {"allowedClasses": {"allowed": ["nginx"]}},
        },
    }
    tenant = sources.tenant_from_capsule(capsule)
    assert tenant.members.users == {"alice"}
    assert tenant.members.groups == {"devs"}
    assert tenant.members.service_accounts == {"system:serviceaccount:ns:bot"}
    assert GroupResource("storage.k8s.io", "storageclasses") in tenant.rules
    assert GroupResource("networking.k8s.io", "ingressclasses") in tenant.rules
    assert GroupResource("", "nodes") in tenant.rules


def pv(name: str, labels: dict[str, str], claim_namespace: str | None = None) -> dict[str, Any]:
    spec = {"claimRef": {"name": "c", "namespace": claim_namespace}} if claim_namespace else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def pvs_seen(tenant: Tenant, candidates: list[dict[str, Any]]) -> set[str]:
    """The PVs among `candidates` a member of `tenant` sees, its namespace being `<name>-dev`."""
    view = view_for(Identity("member"), [tenant], {f"{tenant.name}-dev": tenant.name})
    assert view is not None
    return {p["metadata"]["name"] for p in candidates if owns(view, PERSISTENT_VOLUMES, p)}


LABELLED_PVS = [
    pv("by-capsule-label", {CAPSULE: "oil"}),
    pv("by-our-label", {OURS: "oil"}),
    pv("for-another-tenant", {CAPSULE: "gas"}),
    pv("bound-in", {}, claim_namespace="oil-dev"),
    pv("bound-elsewhere", {CAPSULE: "gas"}, claim_namespace="gas-dev"),
]


def test_a_capsule_tenant_sees_pvs_labelled_with_capsules_key_not_ours() -> None:
    """Capsule marks what belongs to a tenant with `capsule.clastix.io/tenant`; our key on a PV
    means nothing for a Capsule tenant (a Capsule tenant owner may be able to set it)."""
    oil = sources.tenant_from_capsule(
        {"metadata": {"name": "oil"}, "spec": {"owners": [{"kind": "User", "name": "member"}]}}
    )
    assert pvs_seen(oil, LABELLED_PVS) == {"by-capsule-label", "bound-in"}


def test_a_tenant_cr_sees_pvs_labelled_with_the_configured_key_not_capsules() -> None:
    oil = sources.tenant_from_cr(cr({"members": {"users": ["member"]}}, name="oil"), OURS)
    assert pvs_seen(oil, LABELLED_PVS) == {"by-our-label", "bound-in"}
