"""The demo's tenants and proxy in front of a REAL cluster (TENANT_PROXY_E2E_KUBECONFIG).

The world (the demo's namespaces, nodes, PVs, classes, RoleBindings, the Tenant CRD and team-c)
is made once per test session, not per test: a real cluster's controllers take seconds to remove
a namespace, and remaking the world for each test would spend the run waiting. Each test starts
its own proxy in front of it; afterwards the world objects a test patched are put back (replaced
by their manifests) and the pods tests created in world namespaces are removed, so the next test
finds the world as made. At the end of the session everything made is deleted, and waited for.

The proxy runs as a ServiceAccount of a namespace of the run's own (`tp-e2e-<random>`), bound to
copies of deploy/'s roles under the run's names: the base ClusterRole, the capsule and
rolebinding-namespaces components' (the suite switches those sources on), and the node-lease
Role. A tenant-proxy already deployed in the cluster keeps its own ClusterRole, bindings, Tenant
CRD and Tenants: a CRD that exists is used, never deleted. Any other world object that exists
already is refused, unless an earlier run left it (it carries the run annotation): that is
removed first, as are earlier runs' proxy identities. Use a disposable cluster all the same:
nodes, PVs and namespaces named as in the demo are made there.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from pathlib import Path
from typing import Any

import yaml
from cluster import CRD, Cluster, Key, key_of, until

from tenant_proxy.demo import Demo, demo_world
from tenant_proxy.kubeconfig import build_kubeconfig, read_credentials, write_kubeconfig

Obj = dict[str, Any]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RUN_ANNOTATION = "e2e.tenant-proxy.io/run"
MANAGED = ("app.kubernetes.io/managed-by", "tenant-proxy-e2e")
RBAC = "rbac.authorization.k8s.io/v1"
NODE_LEASES = "kube-node-lease"
# deploy/'s roles for the proxy (the base's and the optional sources' the suite turns on).
PROXY_CLUSTER_ROLES = (
    DEPLOY / "clusterrole.yaml",
    DEPLOY / "components" / "capsule" / "clusterrole.yaml",
    DEPLOY / "components" / "rolebinding-namespaces" / "clusterrole.yaml",
)
PROXY_ROLE = DEPLOY / "role-node-leases.yaml"
SETTLE_WITHIN = 60.0


def is_proxy_rbac(obj: Obj) -> bool:
    """The demo world's roles and bindings for the proxy: made under the run's names instead."""
    kinds = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    return obj["kind"] in kinds and obj["metadata"]["name"].startswith("tenant-proxy")


def world_objects() -> list[Obj]:
    return [obj for obj in demo_world() if not is_proxy_rbac(obj)]


def _load(path: Path) -> Obj:
    doc: Obj = yaml.safe_load(path.read_text())
    return doc


def identity_objects(run: str) -> list[Obj]:
    """The proxy's ServiceAccount in namespace `run`, bound to copies of deploy/'s roles."""
    account = {"kind": "ServiceAccount", "name": "tenant-proxy", "namespace": run}
    out: list[Obj] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": run}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "tenant-proxy", "namespace": run},
        },
    ]
    for path in PROXY_CLUSTER_ROLES:
        role = _load(path)
        name = f"{run}-{role['metadata']['name']}"
        out.append(
            {
                "apiVersion": RBAC,
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": role["rules"],
            }
        )
        out.append(
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [account],
            }
        )
    role = _load(PROXY_ROLE)
    name = f"{run}-{role['metadata']['name']}"
    meta = {"name": name, "namespace": NODE_LEASES}
    out.append({"apiVersion": RBAC, "kind": "Role", "metadata": meta, "rules": role["rules"]})
    out.append(
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [account],
        }
    )
    for obj in out:
        obj["metadata"]["labels"] = dict([MANAGED])
    return out


def marked(obj: Obj, run: str) -> Obj:
    """A copy of `obj` annotated with the run, so a later run knows it as a leftover."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("annotations", {})[RUN_ANNOTATION] = run
    return out


def first_grant(role: Obj) -> dict[str, str]:
    """SubjectAccessReview attributes of one thing `role` allows (to see it is in effect)."""
    rule = role["rules"][0]
    attributes = {
        "verb": rule["verbs"][0],
        "group": rule["apiGroups"][0],
        "resource": rule["resources"][0],
    }
    if role["metadata"].get("namespace"):
        attributes["namespace"] = role["metadata"]["namespace"]
    return attributes


class RealWorld:
    """The demo world and the proxy's identity in one real cluster, for one test session."""

    def __init__(
        self, admin_kubeconfig: Path, world: list[Obj] | None = None, run: str = ""
    ) -> None:
        self.admin_kubeconfig = admin_kubeconfig
        self.run = run or f"tp-e2e-{secrets.token_hex(3)}"
        self.world = [marked(o, self.run) for o in (world_objects() if world is None else world)]
        self.identity = [marked(o, self.run) for o in identity_objects(self.run)]
        self.manifests: dict[Key, Obj] = {key_of(o): o for o in self.world}
        self.made: list[Key] = []
        self.adopted: list[Key] = []
        self.ready = False
        self.failure: BaseException | None = None

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.run}:tenant-proxy"

    @property
    def namespaces(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.world if o["kind"] == "Namespace"]

    async def ensure(self) -> None:
        """Make the world, once; a failure removes what was made, and is raised again to
        every test after it without another attempt."""
        if self.ready:
            return
        if self.failure is not None:
            raise RuntimeError(f"the end-to-end world could not be made: {self.failure}")
        cluster = await Cluster.connect(self.admin_kubeconfig)
        try:
            await self._make_all(cluster)
            self.ready = True
        except BaseException as exc:
            self.failure = exc
            await self._remove_made(cluster)
            raise
        finally:
            await cluster.close()

    async def _make_all(self, cluster: Cluster) -> None:
        await self._clear_the_way(cluster)
        for obj in self.identity:
            await self._make(cluster, obj)
        await self._wait_for_rbac(cluster)
        for obj in self.world:
            await self._make(cluster, obj)
        await self._wait_for_default_accounts(cluster)

    async def _make(self, cluster: Cluster, obj: Obj) -> None:
        key = key_of(obj)
        if (obj["apiVersion"], obj["kind"]) == CRD and await cluster.get(*key) is not None:
            # A tenant-proxy deployed here already installed it: use it, leave it.
            self.adopted.append(key)
            await cluster.wait_crd_served(obj["metadata"]["name"])
            return
        await cluster.create(obj)  # waits until a CRD is Established and served
        cluster.created.clear()  # removed by remove(), not by the test's fixture
        self.made.append(key)

    async def _clear_the_way(self, cluster: Cluster) -> None:
        """Remove earlier runs' leftovers; refuse to touch anything else that is in the way."""
        for role_kind in ("ClusterRoleBinding", "ClusterRole"):
            for obj in await cluster.list(RBAC, role_kind, f"{MANAGED[0]}={MANAGED[1]}"):
                await cluster.delete_now(*key_of(obj))
        for kind in ("RoleBinding", "Role"):
            for obj in await cluster.list(RBAC, kind, f"{MANAGED[0]}={MANAGED[1]}", NODE_LEASES):
                await cluster.delete_now(*key_of(obj))
        leftovers: list[Key] = []
        clashes: list[Key] = []
        for obj in self.world:
            key = key_of(obj)
            current = await cluster.get(*key)
            if current is None or (obj["apiVersion"], obj["kind"]) == CRD:
                continue
            annotations = current["metadata"].get("annotations") or {}
            (leftovers if RUN_ANNOTATION in annotations else clashes).append(key)
        if clashes:
            names = ", ".join(
                f"{kind} {ns + '/' if ns else ''}{name}" for _, kind, name, ns in clashes
            )
            raise RuntimeError(
                f"the cluster already has {names}, not made by the end-to-end suite: "
                "run it against a disposable cluster"
            )
        old_namespaces = [
            o["metadata"]["name"]
            for o in await cluster.list("v1", "Namespace", f"{MANAGED[0]}={MANAGED[1]}")
        ]
        leftovers += [("v1", "Namespace", name, "") for name in old_namespaces]
        await self._delete_and_wait(cluster, leftovers)

    async def _wait_for_rbac(self, cluster: Cluster) -> None:
        """Until the authorizer sees the new bindings (kube-apiserver's RBAC reads them from an
        informer: a request right after the binding may still be refused)."""
        groups = [
            "system:serviceaccounts",
            f"system:serviceaccounts:{self.run}",
            "system:authenticated",
        ]
        for role in (o for o in self.identity if o["kind"] in ("ClusterRole", "Role")):
            attributes = first_grant(role)

            async def allowed(attributes: dict[str, str] = attributes) -> bool | None:
                return True if await cluster.allowed(self.user, groups, attributes) else None

            await until(allowed, f"{self.user} to be allowed {attributes}", SETTLE_WITHIN)

    async def _wait_for_default_accounts(self, cluster: Cluster) -> None:
        """Until each world namespace has its `default` ServiceAccount: kube-controller-manager
        adds it after the namespace is made, and a pod created before is refused."""
        for namespace in self.namespaces:

            async def present(namespace: str = namespace) -> bool | None:
                found = await cluster.get("v1", "ServiceAccount", "default", namespace)
                return True if found is not None else None

            await until(present, f"ServiceAccount {namespace}/default", SETTLE_WITHIN)

    async def upstream_kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig of the proxy's ServiceAccount, with a fresh token."""
        cluster = await Cluster.connect(self.admin_kubeconfig)
        try:
            token = await cluster.service_account_token(self.run, "tenant-proxy")
        finally:
            await cluster.close()
        creds = read_credentials(self.admin_kubeconfig)
        assert creds.ca_pem is not None, "the admin kubeconfig must carry the cluster's CA"
        config = build_kubeconfig(creds.server, creds.ca_pem, user="tenant-proxy", token=token)
        return write_kubeconfig(directory / "upstream.kubeconfig", config)

    async def restore(self, cluster: Cluster, keys: list[Key]) -> None:
        """Put back the world objects among `keys` (a test patched them) as they were made."""
        for key in dict.fromkeys(keys):
            manifest = self.manifests.get(key)
            current = await cluster.get(*key) if manifest is not None else None
            if manifest is None or current is None:
                continue
            body = copy.deepcopy(manifest)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if current["metadata"].get("finalizers"):
                body["metadata"]["finalizers"] = current["metadata"]["finalizers"]
            await cluster.replace(body)

    async def reset(self) -> None:
        """After a test: remove the pods it left in world namespaces (created through the
        proxy's admin listener, so no fixture knows them), and wait until they are gone."""
        if not self.ready:
            return
        cluster = await Cluster.connect(self.admin_kubeconfig)
        try:
            await self._delete_and_wait(cluster, await pods_in(cluster, self.namespaces))
        finally:
            await cluster.close()

    async def remove(self) -> None:
        """Delete everything made (never what was adopted), and wait until it is gone."""
        cluster = await Cluster.connect(self.admin_kubeconfig)
        try:
            await self._remove_made(cluster)
        finally:
            await cluster.close()
        self.ready = False

    async def _remove_made(self, cluster: Cluster) -> None:
        made, self.made = self.made, []
        await self._delete_and_wait(cluster, list(reversed(made)))

    @staticmethod
    async def _delete_and_wait(cluster: Cluster, keys: list[Key]) -> None:
        """Delete all, then wait for all at once: namespaces terminate side by side.

        The pods of namespaces about to go are deleted first, at once: the namespace
        controller deletes them gracefully, and a pod bound to a node no kubelet runs (the
        world's nodes) would stay Terminating, and its namespace with it.
        """
        namespaces = [name for _, kind, name, _ in keys if kind == "Namespace"]
        for key in [*await pods_in(cluster, namespaces), *keys]:
            await cluster.delete_now(*key)
        await asyncio.gather(*(cluster.wait_gone(*key) for key in keys))


async def pods_in(cluster: Cluster, namespaces: list[str]) -> list[Key]:
    found: list[Key] = []
    for namespace in namespaces:
        if await cluster.get("v1", "Namespace", namespace) is None:
            continue
        names = await cluster.names("v1", "Pod", namespace)
        found += [("v1", "Pod", name, namespace) for name in names]
    return found


_WORLDS: dict[Path, RealWorld] = {}


def shared_world(admin_kubeconfig: Path) -> RealWorld:
    """The session's world in the cluster of `admin_kubeconfig` (made on first use)."""
    return _WORLDS.setdefault(admin_kubeconfig.resolve(), RealWorld(admin_kubeconfig))


def remove_shared_worlds() -> None:
    """End of the session: delete every world made (a loop of its own: tests' loops are gone)."""
    while _WORLDS:
        _, world = _WORLDS.popitem()
        asyncio.run(world.remove())


class RealClusterDemo(Demo):
    """The demo, with the cluster of `admin_kubeconfig` as the upstream instead of the emulator."""

    def __init__(
        self, directory: Path, admin_kubeconfig: Path, world: RealWorld | None = None
    ) -> None:
        super().__init__(directory)
        self.admin_kubeconfig = admin_kubeconfig
        self.world = world or shared_world(admin_kubeconfig)

    async def start_upstream(self) -> Path:
        await self.world.ensure()
        return await self.world.upstream_kubeconfig(self.dir)

    async def stop_upstream(self) -> None:
        await self.world.reset()
