"""Kubernetes objects the tests create, built as the demo world's are."""

from __future__ import annotations

from typing import Any

TENANT_LABEL = "tenant-proxy.io/tenant"


def namespace(name: str, tenant: str, **annotations: str) -> dict[str, Any]:
    """A Namespace labelled for `tenant` (the demo's tenancy label)."""
    metadata: dict[str, Any] = {"name": name, "labels": {TENANT_LABEL: tenant}}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def persistent_volume(name: str, namespace: str, claim: str = "data") -> dict[str, Any]:
    """A PersistentVolume bound to claim `namespace`/`claim`, as the demo world's are."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "hostPath": {"path": f"/data/{name}"},
            "claimRef": {"name": claim, "namespace": namespace},
        },
    }
