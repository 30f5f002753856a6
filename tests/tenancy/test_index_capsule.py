"""Whose a namespace is when Capsule is read too: a namespace with Capsule's label is that Capsule
tenant's or nobody's, whatever our label on it says (a Capsule tenant owner may set ours on its
own namespaces; Capsule's webhook enforces only its own). The index against an API server (the
emulator, over a real socket), as in test_index_resync."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tenant_proxy.demo import TENANTS, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.identity import Identity
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.upstream import Upstream

OURS = "tenant-proxy.io/tenant"
CAPSULE = "capsule.clastix.io/tenant"
ALICE = Identity(user="alice", groups=("tenant-a-devs",))  # team-a's, from the config
OLGA = Identity(user="olga")  # owner of the Capsule tenant `oil`

CAPSULE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "tenants.capsule.clastix.io"},
    "spec": {
        "group": "capsule.clastix.io",
        "scope": "Cluster",
        "names": {"plural": "tenants", "singular": "tenant", "kind": "Tenant"},
        "versions": [
            {
                "name": "v1beta2",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
OIL = {
    "apiVersion": "capsule.clastix.io/v1beta2",
    "kind": "Tenant",
    "metadata": {"name": "oil"},
    "spec": {"owners": [{"kind": "User", "name": "olga"}]},
}
# The namespaces under test, by the labels they carry.
LABELLED = {
    "oil-dev": {CAPSULE: "oil"},
    "oil-and-ours": {CAPSULE: "oil", OURS: "team-a"},
    # Capsule's label names no Capsule tenant (deleted, or not yet read): still not team-a's.
    "capsule-orphan": {CAPSULE: "gone", OURS: "team-a"},
    "ours-only": {OURS: "team-a"},
}


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@contextlib.asynccontextmanager
async def synced_index(directory: Path, capsule: bool) -> AsyncIterator[TenancyIndex]:
    labelled = [namespace(name, labels) for name, labels in LABELLED.items()]
    emulator = Emulator(seed_objects=[*demo_world(), CAPSULE_CRD, OIL, *labelled])
    await emulator.start()
    kubeconfig = emulator.write_kubeconfig(
        directory / "kubeconfig", "tenant-proxy", ("system:masters",)
    )
    settings = parse_settings(
        {
            "tls": {"cert_file": "unused.crt", "key_file": "unused.key"},
            "upstream": {"kubeconfig": str(kubeconfig)},
            "tenancy": {"tenants": TENANTS, "capsule": capsule},
        },
        environ={},
    )
    upstream = Upstream(settings.upstream)
    index = TenancyIndex(settings.tenancy, upstream, Metrics())
    await index.start()
    try:
        assert await index.wait_synced(10)
        yield index
    finally:
        await index.stop()
        await upstream.close()
        await emulator.stop()


def seen_by(index: TenancyIndex, caller: Identity) -> set[str]:
    """The namespaces under test that `caller`'s view holds."""
    view = index.view_for(caller)
    return set() if view is None else set(view.namespaces & LABELLED.keys())


@pytest.fixture
async def capsule_index(tmp_path: Path) -> AsyncIterator[TenancyIndex]:
    async with synced_index(tmp_path, capsule=True) as index:
        yield index


async def test_with_capsule_its_label_decides_before_ours(capsule_index: TenancyIndex) -> None:
    owner = capsule_index.namespace_owner()
    assert {name: owner.get(name) for name in LABELLED} == {
        "oil-dev": "oil",
        "oil-and-ours": "oil",
        "capsule-orphan": "gone",
        "ours-only": "team-a",
    }
    assert owner["team-a-dev"] == "team-a"  # the demo world's, labelled ours only


async def test_with_capsule_our_label_gives_no_capsule_labelled_namespace_to_our_tenant(
    capsule_index: TenancyIndex,
) -> None:
    assert seen_by(capsule_index, ALICE) == {"ours-only"}
    assert seen_by(capsule_index, OLGA) == {"oil-dev", "oil-and-ours"}


async def test_without_capsule_its_label_means_nothing(tmp_path: Path) -> None:
    async with synced_index(tmp_path, capsule=False) as index:
        owner = index.namespace_owner()
        assert {name: owner.get(name) for name in LABELLED} == {
            "oil-dev": None,
            "oil-and-ours": "team-a",
            "capsule-orphan": "team-a",
            "ours-only": "team-a",
        }
        assert seen_by(index, ALICE) == {"oil-and-ours", "capsule-orphan", "ours-only"}
        assert index.view_for(OLGA) is None  # no Capsule tenant is read
