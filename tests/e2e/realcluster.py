"""The demo's tenants and proxy in front of a REAL cluster (TENANT_PROXY_E2E_KUBECONFIG).

The proxy gets the least-privilege identity of deploy/: a ServiceAccount bound to the
`tenant-proxy` ClusterRole and the node-lease Role, with a short-lived token, so the suite also
proves those roles are enough. Everything created is removed at the end. Use a disposable
cluster: the world's names (team-a-dev, node-a1, ...) must not exist there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster import Cluster

from tenant_proxy.demo import Demo, demo_world
from tenant_proxy.kubeconfig import build_kubeconfig, read_credentials, write_kubeconfig

E2E_NAMESPACE = "tenant-proxy-e2e"
PROXY_IDENTITY: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": E2E_NAMESPACE}},
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "tenant-proxy", "namespace": E2E_NAMESPACE},
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "tenant-proxy-e2e"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "tenant-proxy",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "tenant-proxy", "namespace": E2E_NAMESPACE}
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant-proxy-e2e-node-leases", "namespace": "kube-node-lease"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "tenant-proxy-node-leases",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "tenant-proxy", "namespace": E2E_NAMESPACE}
        ],
    },
]


class RealClusterDemo(Demo):
    """The demo, with the cluster of `admin_kubeconfig` as the upstream instead of the emulator."""

    def __init__(self, directory: Path, admin_kubeconfig: Path) -> None:
        super().__init__(directory)
        self.admin_kubeconfig = admin_kubeconfig
        self.created: list[dict[str, Any]] = []

    async def start_upstream(self) -> Path:
        cluster = await Cluster.connect(self.admin_kubeconfig)
        try:
            for obj in [*demo_world(), *PROXY_IDENTITY]:
                await cluster.create(obj)
                self.created.append(obj)
            cluster.created.clear()  # removed by stop_upstream, in world order
            token = await cluster.service_account_token(E2E_NAMESPACE, "tenant-proxy")
        finally:
            await cluster.close()
        creds = read_credentials(self.admin_kubeconfig)
        assert creds.ca_pem is not None, "the admin kubeconfig must carry the cluster's CA"
        config = build_kubeconfig(creds.server, creds.ca_pem, user="tenant-proxy", token=token)
        return write_kubeconfig(self.dir / "upstream.kubeconfig", config)

    async def stop_upstream(self) -> None:
        cluster = await Cluster.connect(self.admin_kubeconfig)
        try:
            for obj in reversed(self.created):
                meta = obj["metadata"]
                await cluster.purge(
                    obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace", "")
                )
        finally:
            await cluster.close()
