"""A cluster-scoped custom resource for tests of rules over CRDs: example.com/v1 Backup, whose
`spec.sourceNamespace` names the namespace it was taken from."""

from __future__ import annotations

from typing import Any

from tenant_proxy.kube.resources import GroupResource

BACKUPS = GroupResource("example.com", "backups")

BACKUP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "backups.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Cluster",
        "names": {"plural": "backups", "singular": "backup", "kind": "Backup"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    },
}


def backup(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"sourceNamespace": namespace, **spec},
    }
