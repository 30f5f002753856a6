"""Resources by API group and plural name, and the ones the proxy treats specially."""

from __future__ import annotations

from typing import NamedTuple


class GroupResource(NamedTuple):
    """An API group ("" for core) and a plural resource name."""

    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


NAMESPACES = GroupResource("", "namespaces")
NODES = GroupResource("", "nodes")
# A node's heartbeat Lease, named after the node (`kubectl describe node` reads it).
NODE_LEASES = GroupResource("coordination.k8s.io", "leases")
NODE_LEASE_NAMESPACE = "kube-node-lease"
NODE_METRICS = GroupResource("metrics.k8s.io", "nodes")
PERSISTENT_VOLUMES = GroupResource("", "persistentvolumes")
CRDS = GroupResource("apiextensions.k8s.io", "customresourcedefinitions")
