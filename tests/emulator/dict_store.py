"""A StoreView over a dict, for the emulator's RBAC, impersonation and review tests.

Enough for them, not a second store: objects keyed by (group, plural, namespace, name) and listed
in insertion order, like the recorded server's answers.
"""

from __future__ import annotations

from tenant_proxy.emulator.rbac import RBAC_GROUP
from tenant_proxy.emulator.types import KubeObject

PLURALS = {
    "ClusterRole": (RBAC_GROUP, "clusterroles"),
    "ClusterRoleBinding": (RBAC_GROUP, "clusterrolebindings"),
    "Role": (RBAC_GROUP, "roles"),
    "RoleBinding": (RBAC_GROUP, "rolebindings"),
    "ServiceAccount": ("", "serviceaccounts"),
    "Pod": ("", "pods"),
}

Key = tuple[str, str, str, str]


class DictStore:
    def __init__(self, objects: list[KubeObject]) -> None:
        self.objects: dict[Key, KubeObject] = {}
        for obj in objects:
            self.put(obj)

    def put(self, obj: KubeObject) -> None:
        group, plural = PLURALS[obj["kind"]]
        meta = obj["metadata"]
        self.objects[(group, plural, meta.get("namespace", ""), meta["name"])] = obj

    def list_objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[KubeObject]:
        return [
            o
            for (g, p, ns, _), o in self.objects.items()
            if (g, p) == (group, plural) and namespace in (None, ns)
        ]

    def get_object(self, group: str, plural: str, namespace: str, name: str) -> KubeObject | None:
        return self.objects.get((group, plural, namespace, name))
