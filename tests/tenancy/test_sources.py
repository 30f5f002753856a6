"""Tenants from their sources: one spec shape, refused whole when any part cannot be read."""

from __future__ import annotations

import pytest

from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.model import GroupResource


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
