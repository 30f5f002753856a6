"""Tenants that name kube-apiserver's implicit groups (found by review h21).

kube-apiserver puts every authenticated caller in `system:authenticated` (whatever the
method: client certificate, OIDC, token), and RBAC bindings to that group match all of them.
A tenant whose members name the group should then admit every caller, as the cluster's RBAC
reads the same words.
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster import Cluster, until
from watching import session_as

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

TENANT = ("tenancy.tenant-proxy.io/v1alpha1", "Tenant")
STORAGE_CLASSES = "/apis/storage.k8s.io/v1/storageclasses"


async def _names(session: Any, path: str) -> set[str]:
    async with session.get(path) as resp:
        assert resp.status == 200, await resp.text()
        return {o["metadata"]["name"] for o in (await resp.json())["items"]}


async def test_a_tenant_of_system_authenticated_admits_a_certificate_caller(
    demo: Demo, cluster: Cluster
) -> None:
    spec = {
        "members": {"groups": ["oidc:tenant-c-devs", "system:authenticated"]},
        "storageClasses": {"names": ["bronze", "silver"]},
    }
    await cluster.patch(*TENANT, "team-c", {"spec": spec})
    async with (
        session_as(demo, "member", ["oidc:tenant-c-devs"]) as member,
        session_as(demo, "dave", []) as dave,
    ):
        # The edit has reached the proxy once a member sees its other change.
        async def edited() -> bool | None:
            return "silver" in await _names(member, STORAGE_CLASSES) or None

        await until(edited, "the Tenant CR edit reaches the proxy", 20)
        # dave is in no other tenant: with team-c's view he sees team-c's namespace, else
        # the cluster's RBAC answers (403: dave has no right to list namespaces).
        async with dave.get("/api/v1/namespaces") as resp:
            assert resp.status == 200, await resp.text()
            names = {o["metadata"]["name"] for o in (await resp.json())["items"]}
        assert names == {"team-c-dev"}
