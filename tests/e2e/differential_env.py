"""The differential test's environment: the emulator and the proxy on an event loop in a
background thread, a `World` written into the emulator as admin, and requests sent through the
proxy over real TLS with client certificates.

The proxy runs with every tenancy source on: the config file's tenants (replaced through the
proxy's reload, as SIGHUP does), Tenant CRs, Capsule Tenants (Capsule mode) and RoleBinding
namespaces. After writing a world, `apply` waits until the proxy's index has seen all of it: it
rewrites one sync object per source and per resource last, and waits for the index to hold
those, since each informer applies its stream in order.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import tempfile
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml
import yarl
from oracle import (
    CLAIM_PATH,
    CRDS,
    CSI_DRIVERS,
    GATEWAY_CLASSES,
    GROUP_PATH,
    GROUPS,
    INGRESS_CLASSES,
    NAMESPACES,
    NODES,
    PRIORITY_CLASSES,
    PVS,
    RUNTIME_CLASSES,
    SNAPSHOT_CLASSES,
    STORAGE_CLASSES,
    WIDGETS,
    Caller,
    Obj,
    Requirement,
    RoleBinding,
    Spec,
    Subject,
    World,
    filtered_resources,
)

from tenant_proxy import pki
from tenant_proxy.config import Settings
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.server import ProxyServer
from tenant_proxy.settings_file import parse_settings

T = TypeVar("T")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FIXTURES = Path(__file__).resolve().parent / "differential-world.yaml"
# Seconds one expected event or state may take on a loaded 2-core machine: a bound on waiting
# for a condition, not a claim about speed.
WAIT = 20.0


# --- the resources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    resource: str
    group: str
    version: str
    kind: str
    namespaced: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{prefix}/{self.resource}"

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


KINDS = {
    NAMESPACES: Kind(NAMESPACES, "", "v1", "Namespace"),
    NODES: Kind(NODES, "", "v1", "Node"),
    PVS: Kind(PVS, "", "v1", "PersistentVolume"),
    STORAGE_CLASSES: Kind(STORAGE_CLASSES, "storage.k8s.io", "v1", "StorageClass"),
    INGRESS_CLASSES: Kind(INGRESS_CLASSES, "networking.k8s.io", "v1", "IngressClass"),
    PRIORITY_CLASSES: Kind(PRIORITY_CLASSES, "scheduling.k8s.io", "v1", "PriorityClass"),
    RUNTIME_CLASSES: Kind(RUNTIME_CLASSES, "node.k8s.io", "v1", "RuntimeClass"),
    GATEWAY_CLASSES: Kind(GATEWAY_CLASSES, "gateway.networking.k8s.io", "v1", "GatewayClass"),
    SNAPSHOT_CLASSES: Kind(
        SNAPSHOT_CLASSES, "snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass"
    ),
    CRDS: Kind(CRDS, "apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    WIDGETS: Kind(WIDGETS, "example.com", "v1", "Widget"),
    CSI_DRIVERS: Kind(CSI_DRIVERS, "storage.k8s.io", "v1", "CSIDriver"),
}
assert {r: k.group for r, k in KINDS.items()} == GROUPS
TENANT_KIND = Kind("tenants", "tenancy.tenant-proxy.io", "v1alpha1", "Tenant")
CAPSULE_KIND = Kind("tenants", "capsule.clastix.io", "v1beta2", "Tenant")
ROLEBINDING_KIND = Kind("rolebindings", "rbac.authorization.k8s.io", "v1", "RoleBinding", True)
# Written in this order, deleted in the reverse one: a CRD before its objects, a namespace
# before its RoleBindings.
ORDER = [KINDS[CRDS], *(k for r, k in KINDS.items() if r != CRDS), ROLEBINDING_KIND]
ORDER += [TENANT_KIND, CAPSULE_KIND]

# Fields the oracle reads, per resource (the rest of an object is its kind's boilerplate).
FIELD_PATHS = {PVS: (CLAIM_PATH,), CRDS: (GROUP_PATH,), WIDGETS: ("spec.namespace",)}

SYNC_TENANT = "zz-sync"
SYNC_LABEL = "example.com/differential-sync"
SYNC_OBJECTS = {r: "syncs.sync.example.com" if r == CRDS else "zz-sync" for r in KINDS}
SYNC_ROLEBINDING = "default/zz-sync"


# --- manifests ---------------------------------------------------------------------------------


def _set_path(doc: dict[str, Any], dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    for step in parents:
        doc = doc.setdefault(step, {})
    doc[last] = value


def crd_manifest(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A cluster-scoped CRD named `<plural>.<group>`, one served version, no objects."""
    plural, group = name.split(".", 1)
    kind = plural[:-1].capitalize()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
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


# Each kind's required boilerplate beyond metadata.
_BODIES: dict[str, dict[str, Any]] = {
    PVS: {
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "hostPath": {"path": "/data"},
        }
    },
    STORAGE_CLASSES: {"provisioner": "example.com/fake"},
    INGRESS_CLASSES: {"spec": {"controller": "example.com/ingress"}},
    PRIORITY_CLASSES: {"value": 100},
    RUNTIME_CLASSES: {"handler": "runc"},
    GATEWAY_CLASSES: {"spec": {"controllerName": "example.com/gateway"}},
    SNAPSHOT_CLASSES: {"driver": "example.com/csi", "deletionPolicy": "Delete"},
    CSI_DRIVERS: {"spec": {"attachRequired": False}},
}


def manifest(resource: str, name: str, obj: Obj) -> dict[str, Any]:
    if resource == CRDS:
        return crd_manifest(name, obj.labels)
    kind = KINDS[resource]
    out: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": name, "labels": dict(obj.labels)},
        **copy.deepcopy(_BODIES.get(resource, {})),
    }
    for path, value in obj.fields.items():
        _set_path(out, path, value)
    if resource == PVS and CLAIM_PATH in obj.fields:
        out["spec"]["claimRef"]["name"] = "data"
    return out


def tenant_manifest(kind: Kind, name: str, spec: Spec) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": name},
        "spec": copy.deepcopy(dict(spec)),
    }


def rolebinding_manifest(key: str, binding: RoleBinding) -> dict[str, Any]:
    namespace, name = key.split("/")
    subjects = []
    for s in binding.subjects:
        subject = {"kind": s.kind, "name": s.name}
        if s.kind == "ServiceAccount":
            subject |= {"namespace": s.namespace} if s.namespace else {}
        else:
            subject["apiGroup"] = "rbac.authorization.k8s.io"
        subjects.append(subject)
    return {
        "apiVersion": ROLEBINDING_KIND.api_version,
        "kind": ROLEBINDING_KIND.kind,
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "differential-configmap-reader",
        },
        "subjects": subjects,
    }


Manifests = dict[tuple[Kind, str], dict[str, Any]]


def manifests(world: World) -> Manifests:
    """The objects the test manages (not the baseline), keyed by kind and name."""
    out: Manifests = {
        (KINDS[resource], name): manifest(resource, name, obj)
        for resource, objects in world.objects.items()
        for name, obj in objects.items()
    }
    for name, spec in world.tenants.items():
        out[(TENANT_KIND, name)] = tenant_manifest(TENANT_KIND, name, spec)
    for name, spec in world.capsule.items():
        out[(CAPSULE_KIND, name)] = tenant_manifest(CAPSULE_KIND, name, spec)
    for key, binding in world.rolebindings.items():
        out[(ROLEBINDING_KIND, key)] = rolebinding_manifest(key, binding)
    return out


def seed_objects() -> list[dict[str, Any]]:
    """deploy/'s Tenant CRD and ClusterRoles (the base's and those of the capsule and
    rolebinding-namespaces components), and the fixtures (which bind them to the proxy)."""
    paths = (
        DEPLOY / "crd-tenant.yaml",
        DEPLOY / "clusterrole.yaml",
        DEPLOY / "components" / "capsule" / "clusterrole.yaml",
        DEPLOY / "components" / "rolebinding-namespaces" / "clusterrole.yaml",
        FIXTURES,
    )
    return [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]


def observed(resource: str, obj: Mapping[str, Any]) -> Obj:
    """What the oracle needs of an object the emulator holds."""
    fields = {}
    for path in FIELD_PATHS.get(resource, ()):
        value: Any = obj
        for step in path.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, str):
            fields[path] = value
    return Obj(labels=dict(obj["metadata"].get("labels") or {}), fields=fields)


def observed_binding(obj: Mapping[str, Any]) -> RoleBinding:
    subjects = tuple(
        Subject(s["kind"], s["name"], s.get("namespace")) for s in obj.get("subjects") or ()
    )
    return RoleBinding(obj["metadata"]["namespace"], subjects)


# --- what a client saw -------------------------------------------------------------------------


@dataclass
class Answer:
    """Status, the object names in order (across pages or events), the kinds of the bodies."""

    status: int
    names: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    body: Any = None
    event_types: list[str] = field(default_factory=list)
    row_objects: list[str | None] = field(default_factory=list)  # Table rows' object kinds

    def record(self, doc: Mapping[str, Any]) -> None:
        """Note one body: a list, a Table, or a single object."""
        self.kinds.append(str(doc.get("kind")))
        if doc.get("kind") == "Table":
            for row in doc.get("rows") or []:
                obj = row.get("object")
                self.row_objects.append(str(obj.get("kind")) if obj else None)
                # includeObject=None leaves the Name column (the first) to tell the name.
                self.names.append(str(obj["metadata"]["name"] if obj else row["cells"][0]))
        elif "items" in doc:
            self.names += [str(item["metadata"]["name"]) for item in doc["items"] or []]
        else:
            self.names.append(str(doc["metadata"]["name"]))


@dataclass(frozen=True)
class Request:
    caller: Caller
    resource: str
    verb: str  # list | get | watch
    form: str  # json | table | table-none (includeObject=None) | partial
    selector: tuple[Requirement, ...] = ()
    limit: int | None = None
    name: str = ""
    initial_events_end: bool = False  # watch: sendInitialEvents=true, else wait for a bookmark

    fields: tuple[Requirement, ...] = ()  # on metadata.name, single values

    @property
    def selector_text(self) -> str:
        return ",".join(_render(r) for r in self.selector)

    def selector_params(self) -> list[tuple[str, str]]:
        out = [("labelSelector", self.selector_text)] if self.selector else []
        if self.fields:
            out.append(("fieldSelector", ",".join(_render(r) for r in self.fields)))
        return out

    def form_params(self) -> list[tuple[str, str]]:
        return [("includeObject", "None")] if self.form == "table-none" else []


def _render(r: Requirement) -> str:
    if r.op == "Exists":
        return r.key
    if r.op == "DoesNotExist":
        return f"!{r.key}"
    if len(r.values) == 1:
        return f"{r.key}{'=' if r.op == 'In' else '!='}{r.values[0]}"
    return f"{r.key} {r.op.lower()} ({','.join(r.values)})"


ACCEPT_LIST = {
    "json": "application/json",
    "table": "application/json;as=Table;v=v1;g=meta.k8s.io",
    "partial": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "table-none": "application/json;as=Table;v=v1;g=meta.k8s.io",
}
ACCEPT_ONE = {
    **ACCEPT_LIST,
    "partial": "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
}


# --- the environment ---------------------------------------------------------------------------


class Environment:
    """Emulator + proxy on an event loop in a background thread, driven synchronously."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client_ca = pki.new_ca("differential-ca")
        self._sessions: dict[Caller, aiohttp.ClientSession] = {}
        self._applied: Manifests = {}
        self._config: Mapping[str, Spec] = {}
        self._sync = 0
        self.baseline: dict[str, dict[str, Obj]] = {}
        self.baseline_bindings: dict[str, RoleBinding] = {}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        self.emulator = Emulator(seed_objects=seed_objects(), bookmark_interval=0.2)
        await self.emulator.start()
        self._base_settings = self._settings_doc()
        self.proxy = ProxyServer(self._settings({}))
        await self.proxy.start()
        self.tenant_url = self.proxy.tenant_url
        for resource, kind in KINDS.items():
            self.baseline[resource] = {
                o["metadata"]["name"]: observed(resource, o)
                for o in self.emulator.store.list_objects(kind.group, resource)
            }
        for o in self.emulator.store.list_objects(ROLEBINDING_KIND.group, "rolebindings"):
            key = f"{o['metadata']['namespace']}/{o['metadata']['name']}"
            self.baseline_bindings[key] = observed_binding(o)

    async def _stop(self) -> None:
        for session in self._sessions.values():
            await session.close()
        await self.proxy.stop()
        await self.emulator.stop()

    def _settings_doc(self) -> dict[str, Any]:
        pki_dir = self.dir / "pki"
        pki_dir.mkdir(exist_ok=True)
        self.client_ca.write(pki_dir / "ca.crt", pki_dir / "ca.key")
        pki.issue_server_cert(self.client_ca, ["127.0.0.1"]).write(
            pki_dir / "server.crt", pki_dir / "server.key"
        )
        upstream = self.emulator.write_kubeconfig(self.dir / "upstream.kubeconfig", "tenant-proxy")
        return {
            "listener": {"address": "127.0.0.1:0"},
            "admin": {"listener": {"address": "127.0.0.1:0"}},
            "tls": {
                "cert_file": str(pki_dir / "server.crt"),
                "key_file": str(pki_dir / "server.key"),
                "client_ca_file": str(pki_dir / "ca.crt"),
            },
            "upstream": {"kubeconfig": str(upstream)},
            "tenancy": {"capsule": True, "rolebinding_namespaces": True},
            "observability": {"metrics": None, "audit_file": None},
            "drain_seconds": 1,
            # Quiet filtered watches get a bookmark as often as the emulator's own watches.
            "limits": {"watch_bookmark_seconds": 0.2},
        }

    def _settings(self, config: Mapping[str, Spec]) -> Settings:
        doc = copy.deepcopy(self._base_settings)
        tenants = [{"name": name, **spec} for name, spec in config.items()]
        doc["tenancy"]["tenants"] = copy.deepcopy(tenants)
        return parse_settings(doc, environ={})

    # -- the world ------------------------------------------------------------------------------
    def full(self, world: World) -> World:
        """The drawn world with the baseline objects and bindings, and the sync objects."""
        sync = Obj(labels={SYNC_LABEL: str(self._sync)})
        objects = {
            r: {**self.baseline[r], SYNC_OBJECTS[r]: sync, **world.objects.get(r, {})}
            for r in KINDS
        }
        bindings = {**self.baseline_bindings, **world.rolebindings}
        return World(objects, world.tenants, world.capsule, world.config, bindings)

    def apply(self, world: World) -> None:
        """Write `world` into the cluster and wait until the proxy's index holds it."""
        self._sync += 1
        self.run(self._apply(manifests(world), world.config))
        self.run(self._wait_index(self.full(world)))

    async def _apply(self, wanted: Manifests, config: Mapping[str, Spec]) -> None:
        rank = {kind: i for i, kind in enumerate(ORDER)}
        # Bookkeeping per step, so a failed example leaves a record that is still true.
        for key in sorted(self._applied.keys() - wanted.keys(), key=lambda k: -rank[k[0]]):
            await self._delete(*key)
            del self._applied[key]
        for key in sorted(wanted, key=lambda k: rank[k[0]]):
            if self._applied.get(key) != wanted[key]:
                await self.emulator.apply(copy.deepcopy(wanted[key]))
                self._applied[key] = wanted[key]
        if config != self._config:
            self.proxy.reload(self._settings(config))
            self._config = config
        await self._write_sync_objects()

    async def _delete(self, kind: Kind, key: str) -> None:
        namespace, _, name = key.rpartition("/")
        deleted = await self.emulator.delete(kind.api_version, kind.kind, name, namespace)
        if (deleted.get("metadata") or {}).get("finalizers"):
            # PVs carry kubernetes.io/pv-protection: finish as the PV controller would.
            patch = {"metadata": {"finalizers": None}}
            await self.emulator.patch(kind.api_version, kind.kind, name, patch, namespace)
        assert self.emulator.get(kind.api_version, kind.kind, name, namespace) is None, key

    async def _write_sync_objects(self) -> None:
        """Last of all, per informer: the index has seen everything before once it has these."""
        label = {SYNC_LABEL: str(self._sync)}
        for resource, name in SYNC_OBJECTS.items():
            await self.emulator.apply(manifest(resource, name, Obj(labels=label)))
        members = {"users": [self._sync_user]}
        await self.emulator.apply(tenant_manifest(TENANT_KIND, SYNC_TENANT, {"members": members}))
        owners = {"owners": [{"kind": "User", "name": self._sync_user}]}
        await self.emulator.apply(tenant_manifest(CAPSULE_KIND, SYNC_TENANT, owners))
        binding = RoleBinding("default", (Subject("User", self._sync_user),))
        await self.emulator.apply(rolebinding_manifest(SYNC_ROLEBINDING, binding))

    @property
    def _sync_user(self) -> str:
        return f"sync-{self._sync}"

    async def _wait_index(self, world: World) -> None:
        """Until the proxy's index holds exactly `world` (it learns of it through informers)."""
        await self._until(lambda: self._index_lag(world))

    async def _until(self, lag: Callable[[], str | None], within: float = 20) -> None:
        """Until `lag()` (what the proxy has yet to learn) is None; generous, for a loaded
        machine (one bug hunt of 2,500 examples saw an informer more than 10 s behind)."""
        try:
            async with asyncio.timeout(within):
                while (behind := lag()) is not None:
                    # The index offers no signal for object updates: poll it, briefly.
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise AssertionError(f"the proxy did not catch up with the world: {behind}") from None

    def _index_lag(self, world: World) -> str | None:
        index = self.proxy.index
        if not index.synced:
            return "informers not synced"
        tenants = index.tenants()
        names = sorted(t.name for t in tenants)
        # The sync tenant twice: once a Tenant CR, once a Capsule Tenant.
        if names != sorted([*world.config, *world.tenants, *world.capsule, *[SYNC_TENANT] * 2]):
            return f"tenants {names}"
        stale = [
            i
            for i, t in enumerate(tenants)
            if t.name == SYNC_TENANT and self._sync_user not in t.members.users
        ]
        if stale:
            return f"the sync tenants at {stale} of {names} are stale"
        view = index.view_for(Identity(self._sync_user))
        if view is None or "default" not in view.namespaces:
            return "the sync RoleBinding is stale"
        for resource in filtered_resources(world):
            store = index.objects(GroupResource(GROUPS[resource], resource))
            projection = store.get(SYNC_OBJECTS[resource])
            labels = (projection or {}).get("metadata", {}).get("labels") or {}
            if labels.get(SYNC_LABEL) != str(self._sync):
                return f"{resource}: the sync object is stale"
        return None

    # -- requests -------------------------------------------------------------------------------
    def session(self, caller: Caller) -> aiohttp.ClientSession:
        if caller not in self._sessions:
            ctx = ssl.create_default_context(cadata=self.client_ca.cert_pem.decode())
            pair = pki.issue_client_cert(self.client_ca, caller.user, caller.groups)
            with tempfile.TemporaryDirectory() as tmp:
                pair.write(Path(tmp) / "c", Path(tmp) / "k")
                ctx.load_cert_chain(Path(tmp) / "c", Path(tmp) / "k")
            self._sessions[caller] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        return self._sessions[caller]

    def url(self, path: str, params: Sequence[tuple[str, str]]) -> yarl.URL:
        # Encoded as client-go's url.Values.Encode does (spaces as '+').
        query = f"?{urlencode(params)}" if params else ""
        return yarl.URL(f"{self.tenant_url}{path}{query}", encoded=True)

    def execute(self, req: Request) -> Answer:
        if req.verb == "list":
            return self.run(self._list(req))
        if req.verb == "get":
            return self.run(self._get(req))
        return self.run(self._watch(req))

    async def _list(self, req: Request) -> Answer:
        session = self.session(req.caller)
        params = req.form_params() + req.selector_params()
        if req.limit is not None:
            params.append(("limit", str(req.limit)))
        answer = Answer(200)
        token = ""
        for _ in range(100):
            page = params + ([("continue", token)] if token else [])
            url = self.url(KINDS[req.resource].path, page)
            async with session.get(url, headers={"Accept": ACCEPT_LIST[req.form]}) as resp:
                doc = orjson.loads(await resp.read())
            if resp.status != 200:
                return Answer(resp.status, body=doc)
            answer.record(doc)
            token = (doc.get("metadata") or {}).get("continue") or ""
            if not token:
                return answer
        raise AssertionError("pagination did not end in 100 pages")

    async def _get(self, req: Request) -> Answer:
        session = self.session(req.caller)
        url = self.url(f"{KINDS[req.resource].path}/{req.name}", req.form_params())
        async with session.get(url, headers={"Accept": ACCEPT_ONE[req.form]}) as resp:
            doc = orjson.loads(await resp.read())
        if resp.status != 200:
            return Answer(resp.status, body=doc)
        answer = Answer(200, body=doc)
        answer.record(doc)
        return answer

    async def _watch(self, req: Request) -> Answer:
        session = self.session(req.caller)
        params = [("watch", "1"), ("allowWatchBookmarks", "true"), *req.form_params()]
        params += req.selector_params()
        if req.initial_events_end:
            params += [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
        url = self.url(KINDS[req.resource].path, params)
        async with session.get(url, headers={"Accept": ACCEPT_ONE[req.form]}) as resp:
            if resp.status != 200:
                return Answer(resp.status, body=orjson.loads(await resp.read()))
            return await _initial_events(resp, req.initial_events_end)

    def set_latency(self, seconds: float) -> None:
        async def set_it() -> None:
            self.emulator.set_latency(seconds)

        self.run(set_it())


async def _initial_events(resp: aiohttp.ClientResponse, initial_events_end: bool) -> Answer:
    """Events up to the end of the initial ones: the initial-events-end BOOKMARK, or the
    first bookmark (the emulator sends one once the stream is quiet for bookmark_interval)."""
    answer = Answer(200)
    while True:
        line = await asyncio.wait_for(resp.content.readline(), WAIT)
        if not line:
            raise AssertionError(f"the watch ended before its initial events did: {answer}")
        event = orjson.loads(line)
        obj = event["object"]
        if event["type"] == "BOOKMARK":
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            ended = annotations.get("k8s.io/initial-events-end") == "true"
            if ended or not initial_events_end:
                return answer
            continue
        answer.event_types.append(event["type"])
        answer.record(obj)
