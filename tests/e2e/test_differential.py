"""Differential property test of tenant filtering, end to end (issue 4, "Done when", first bullet).

Hypothesis draws a world (namespaces, nodes, PVs, storage/ingress/priority classes, Tenant CRs)
and requests (list in JSON, Table, Table with includeObject=None and PartialObjectMetadataList,
with and without client label/field selectors and `limit` pagination; get by name; watch initial
events) as random users and groups.
The world is written into the emulator as admin, the proxy's index is awaited until it holds
exactly that world, then every request goes through the proxy over real TLS with a client
certificate, and the names it answers must equal those of `oracle` (written from the issue's
rules, importing nothing of tenant_proxy's filtering or tenancy).

One emulator and one proxy serve the whole module: they run on an event loop in a background
thread, so the test itself is an ordinary synchronous `@given` test and Hypothesis shrinks a
failure to a minimal world and request.

A second property holds a watch open while the world changes into another one: the watch must
end up showing exactly the oracle's answer for the new world, and never a MODIFIED or DELETED of
an object it did not show. The regressions at the end are minimal examples the properties found.
"""

from __future__ import annotations

import asyncio
import copy
import os
import ssl
import tempfile
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import yaml
import yarl
from hypothesis import (
    HealthCheck,
    Phase,
    assume,
    currently_in_test_context,
    event,
    given,
    note,
    settings,
)
from hypothesis import strategies as st
from oracle import (
    CLASS_KEYS,
    INGRESS_CLASSES,
    NAMESPACES,
    NODES,
    PRIORITY_CLASSES,
    PVS,
    STORAGE_CLASSES,
    TENANT_LABEL,
    Caller,
    Obj,
    Requirement,
    Spec,
    World,
    listed,
    visible,
)

from tenant_proxy import pki
from tenant_proxy.config import Settings, parse_settings
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.server import ProxyServer

pytestmark = pytest.mark.e2e

T = TypeVar("T")
# 200 in CI; raise it for a longer bug hunt (DIFFERENTIAL_EXAMPLES=2000).
EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "200"))
TRANSITIONS = int(os.environ.get("DIFFERENTIAL_TRANSITIONS", "50"))
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


# --- the resources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    resource: str
    group: str
    version: str
    kind: str

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
}
TENANT_KIND = Kind("tenants", "tenancy.tenant-proxy.io", "v1alpha1", "Tenant")

# The names the test manages; anything else in the emulator (system namespaces, built-in
# priority classes) is the fixed baseline, recorded once and part of every world.
NAMES: dict[str, tuple[str, ...]] = {
    NAMESPACES: tuple(f"ns-{i}" for i in range(6)),
    NODES: tuple(f"node-{i}" for i in range(4)),
    PVS: tuple(f"pv-{i}" for i in range(5)),
    STORAGE_CLASSES: ("gold", "gold-2", "silver", "team-x"),
    INGRESS_CLASSES: ("nginx", "nginx-a", "traefik", "team-x"),
    PRIORITY_CLASSES: ("high", "team-a-high", "low", "team-x"),
}
TENANTS = ("t0", "t1", "t2")
SYNC_TENANT = "zz-sync"  # rewritten last on every world change: the index has seen all before
USERS = (
    "u0",
    "u1",
    "u2",
    "system:serviceaccount:ns-1:robot",
    "system:serviceaccount:ns-2:robot",
)
GROUPS = ("g0", "g1", "g-cfg")
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "pool": ("a", "b", "c"),
    "zone": ("z1", "z2"),
    "tier": ("premium", "standard"),
    "env": ("a", "b"),
    TENANT_LABEL: ("t0", "t1", "t2", "cfg", "v-t0", "ghost"),
    "kubernetes.io/metadata.name": ("ns-0", "ns-1", "ns-3"),
}
REGEXES = ("gold.*", ".*-x", "team-.*", "gol", "(nginx|high)", "[a-m].*")

# The config file's tenant, fixed; the same spec in Tenant CR shape for the oracle.
CONFIG_TENANT: dict[str, Any] = {
    "name": "cfg",
    "members": {"groups": ["g-cfg"]},
    "namespaces": ["ns-5"],
    "node_selector": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["c"]}]},
    "storageclasses": {"regex": "gold.*"},
}
CONFIG_SPEC: Spec = {
    "members": {"groups": ["g-cfg"]},
    "namespaces": ["ns-5"],
    "nodeSelector": CONFIG_TENANT["node_selector"],
    "storageClasses": {"regex": "gold.*"},
}

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


# --- manifests ---------------------------------------------------------------------------------


def manifest(resource: str, name: str, obj: Obj) -> dict[str, Any]:
    kind = KINDS[resource]
    out: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": name, "labels": dict(obj.labels)},
    }
    if resource == PVS:
        out["spec"] = {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "hostPath": {"path": f"/data/{name}"},
        }
        if obj.claim is not None:
            out["spec"]["claimRef"] = {"name": "data", "namespace": obj.claim}
    elif resource == STORAGE_CLASSES:
        out["provisioner"] = "example.com/fake"
    elif resource == INGRESS_CLASSES:
        out["spec"] = {"controller": "example.com/ingress"}
    elif resource == PRIORITY_CLASSES:
        out["value"] = 100
    return out


def tenant_manifest(name: str, spec: Spec) -> dict[str, Any]:
    return {
        "apiVersion": TENANT_KIND.api_version,
        "kind": TENANT_KIND.kind,
        "metadata": {"name": name},
        "spec": copy.deepcopy(dict(spec)),
    }


def manifests(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    out = {
        (resource, name): manifest(resource, name, obj)
        for resource, objects in world.objects.items()
        for name, obj in objects.items()
    }
    for name, spec in world.tenants.items():
        out[(TENANT_KIND.resource, name)] = tenant_manifest(name, spec)
    return out


def seed_objects() -> list[dict[str, Any]]:
    """The Tenant CRD and the proxy's ClusterRole from deploy/, bound to the proxy's user."""
    docs = [
        *yaml.safe_load_all((DEPLOY / "crd-tenant.yaml").read_text()),
        *yaml.safe_load_all((DEPLOY / "clusterrole.yaml").read_text()),
    ]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "tenant-proxy"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "tenant-proxy",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tenant-proxy"}
        ],
    }
    return [d for d in docs if d] + [binding]


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


def _render(r: Requirement) -> str:
    if r.op == "Exists":
        return r.key
    if r.op == "DoesNotExist":
        return f"!{r.key}"
    if len(r.values) == 1:
        return f"{r.key}{'=' if r.op == 'In' else '!='}{r.values[0]}"
    return f"{r.key} {r.op.lower()} ({','.join(r.values)})"


# --- the environment ---------------------------------------------------------------------------


class Environment:
    """Emulator + proxy on an event loop in a background thread, driven synchronously."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client_ca = pki.new_ca("differential-ca")
        self._sessions: dict[Caller, aiohttp.ClientSession] = {}
        self._applied: dict[tuple[str, str], dict[str, Any]] = {}
        self._sync = 0
        self.baseline: dict[str, dict[str, Obj]] = {}

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
        self.proxy = ProxyServer(self._settings())
        await self.proxy.start()
        self.tenant_url = self.proxy.tenant_url
        for resource, kind in KINDS.items():
            self.baseline[resource] = {
                o["metadata"]["name"]: Obj(labels=o["metadata"].get("labels") or {})
                for o in self.emulator.store.list_objects(kind.group, resource)
            }

    async def _stop(self) -> None:
        for session in self._sessions.values():
            await session.close()
        await self.proxy.stop()
        await self.emulator.stop()

    def _settings(self) -> Settings:
        pki_dir = self.dir / "pki"
        pki_dir.mkdir(exist_ok=True)
        self.client_ca.write(pki_dir / "ca.crt", pki_dir / "ca.key")
        pki.issue_server_cert(self.client_ca, ["127.0.0.1"]).write(
            pki_dir / "server.crt", pki_dir / "server.key"
        )
        upstream = self.emulator.write_kubeconfig(self.dir / "upstream.kubeconfig", "tenant-proxy")
        return parse_settings(
            {
                "listener": {"address": "127.0.0.1:0"},
                "admin": {"listener": {"address": "127.0.0.1:0"}},
                "tls": {
                    "cert_file": str(pki_dir / "server.crt"),
                    "key_file": str(pki_dir / "server.key"),
                    "client_ca_file": str(pki_dir / "ca.crt"),
                },
                "upstream": {"kubeconfig": str(upstream)},
                "tenancy": {"tenants": [CONFIG_TENANT]},
                "observability": {"metrics": None, "audit_file": None},
                "drain_seconds": 1,
            },
            environ={},
        )

    # -- the world ------------------------------------------------------------------------------
    def full(self, world: World) -> World:
        """The drawn world with the baseline objects and the config file's tenant."""
        objects = {r: {**self.baseline[r], **world.objects.get(r, {})} for r in KINDS}
        return World(objects, {"cfg": CONFIG_SPEC, **world.tenants})

    def apply(self, world: World) -> None:
        self._sync += 1
        self.run(self._apply(manifests(world)))
        self.run(self._wait_index(self.full(world)))

    async def _apply(self, wanted: dict[tuple[str, str], dict[str, Any]]) -> None:
        # Bookkeeping per step, so a failed example leaves a record that is still true.
        for key in sorted(self._applied.keys() - wanted.keys()):
            kind = KINDS.get(key[0], TENANT_KIND)
            deleted = await self.emulator.delete(kind.api_version, kind.kind, key[1])
            if (deleted.get("metadata") or {}).get("finalizers"):
                # PVs carry kubernetes.io/pv-protection: finish as the PV controller would.
                patch = {"metadata": {"finalizers": None}}
                await self.emulator.patch(kind.api_version, kind.kind, key[1], patch)
            del self._applied[key]
            assert self.emulator.get(kind.api_version, kind.kind, key[1]) is None, key
        for key, obj in wanted.items():
            if self._applied.get(key) != obj:
                await self.emulator.apply(copy.deepcopy(obj))
                self._applied[key] = obj
        sync = {"members": {"users": [f"sync-{self._sync}"]}}
        await self.emulator.apply(tenant_manifest(SYNC_TENANT, sync))

    async def _wait_index(self, world: World) -> None:
        """Until the proxy's index holds exactly `world` (it learns of it through informers)."""
        lag = self._index_lag(world)
        try:
            async with asyncio.timeout(10):
                while lag is not None:
                    # The index offers no signal for object updates: poll it, briefly.
                    await asyncio.sleep(0.005)
                    lag = self._index_lag(world)
        except TimeoutError:
            raise AssertionError(
                f"the proxy's index did not catch up with the world: {lag}"
            ) from None

    def _index_lag(self, world: World) -> str | None:
        index = self.proxy.index
        if not index.synced:
            return "informers not synced"
        tenants = {t.name: t for t in index.tenants()}
        if set(tenants) != {*world.tenants, SYNC_TENANT}:
            return f"tenants {sorted(tenants)}"
        if tenants[SYNC_TENANT].members.users != {f"sync-{self._sync}"}:
            return "the sync tenant is stale"
        for resource in _indexed(world):
            kind = KINDS[resource]
            have = index.objects((kind.group, resource))  # type: ignore[arg-type]
            want = {n: _projection(resource, n, o) for n, o in world.objects[resource].items()}
            got = {n: _seen(resource, p) for n, p in have.items()}
            if got != want:
                return f"{resource}: index {got} != world {want}"
        return None

    # -- requests -------------------------------------------------------------------------------
    def _session(self, caller: Caller) -> aiohttp.ClientSession:
        if caller not in self._sessions:
            ctx = ssl.create_default_context(cadata=self.client_ca.cert_pem.decode())
            pair = pki.issue_client_cert(self.client_ca, caller.user, caller.groups)
            with tempfile.TemporaryDirectory() as tmp:
                pair.write(Path(tmp) / "c", Path(tmp) / "k")
                ctx.load_cert_chain(Path(tmp) / "c", Path(tmp) / "k")
            self._sessions[caller] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        return self._sessions[caller]

    def _url(self, path: str, params: Sequence[tuple[str, str]]) -> yarl.URL:
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
        session = self._session(req.caller)
        params = _form_params(req)
        params += req.selector_params()
        if req.limit is not None:
            params.append(("limit", str(req.limit)))
        answer = Answer(200)
        token = ""
        for _ in range(100):
            page = params + ([("continue", token)] if token else [])
            url = self._url(KINDS[req.resource].path, page)
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
        session = self._session(req.caller)
        url = self._url(f"{KINDS[req.resource].path}/{req.name}", _form_params(req))
        async with session.get(url, headers={"Accept": ACCEPT_ONE[req.form]}) as resp:
            doc = orjson.loads(await resp.read())
        if resp.status != 200:
            return Answer(resp.status, body=doc)
        answer = Answer(200, body=doc)
        answer.record(doc)
        return answer

    async def _watch(self, req: Request) -> Answer:
        session = self._session(req.caller)
        params = [("watch", "1"), ("allowWatchBookmarks", "true"), *_form_params(req)]
        params += req.selector_params()
        if req.initial_events_end:
            params += [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
        url = self._url(KINDS[req.resource].path, params)
        async with session.get(url, headers={"Accept": ACCEPT_ONE[req.form]}) as resp:
            if resp.status != 200:
                return Answer(resp.status, body=orjson.loads(await resp.read()))
            return await _initial_events(resp, req.initial_events_end)


async def _initial_events(resp: aiohttp.ClientResponse, initial_events_end: bool) -> Answer:
    """Events up to the end of the initial ones: the initial-events-end BOOKMARK, or the
    first bookmark (the emulator sends one once the stream is quiet for bookmark_interval)."""
    answer = Answer(200)
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 5)
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


def _form_params(req: Request) -> list[tuple[str, str]]:
    return [("includeObject", "None")] if req.form == "table-none" else []


def _indexed(world: World) -> list[str]:
    """Resources the index must hold: those some tenant has a rule for."""
    out = [NAMESPACES, PVS]
    if any(s.get("nodeSelector") is not None for s in world.tenants.values()):
        out.append(NODES)
    for resource, key in CLASS_KEYS.items():
        if any(s.get(key) is not None for s in world.tenants.values()):
            out.append(resource)
    return out


def _projection(resource: str, name: str, obj: Obj) -> tuple[Any, ...]:
    labels = dict(obj.labels)
    if resource == NAMESPACES:
        labels["kubernetes.io/metadata.name"] = name
    return (labels, obj.claim) if resource == PVS else (labels,)


def _seen(resource: str, projection: Mapping[str, Any]) -> tuple[Any, ...]:
    labels = dict(projection["metadata"]["labels"])
    if resource != PVS:
        return (labels,)
    return (labels, ((projection.get("spec") or {}).get("claimRef") or {}).get("namespace"))


@pytest.fixture(scope="module")
def env() -> Iterator[Environment]:
    with tempfile.TemporaryDirectory(prefix="differential-") as tmp:
        environment = Environment(Path(tmp))
        environment.start()
        try:
            yield environment
        finally:
            environment.stop()


# --- strategies --------------------------------------------------------------------------------


def label_sets(keys: Sequence[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={k: st.sampled_from(LABEL_VALUES[k]) for k in keys})


OBJECT_LABEL_KEYS = {
    NAMESPACES: (TENANT_LABEL, "env"),
    NODES: ("pool", "zone"),
    PVS: (TENANT_LABEL, "tier"),
    STORAGE_CLASSES: ("tier", "pool"),
    INGRESS_CLASSES: ("tier", "pool"),
    PRIORITY_CLASSES: ("tier", "pool"),
}
CLAIMS = (None, *NAMES[NAMESPACES], "default", "elsewhere")


def objects(resource: str) -> st.SearchStrategy[dict[str, Obj]]:
    labels = label_sets(OBJECT_LABEL_KEYS[resource])
    if resource == PVS:
        obj = st.builds(Obj, labels=labels, claim=st.sampled_from(CLAIMS))
    else:
        obj = st.builds(Obj, labels=labels)
    names = NAMES[resource]
    return st.dictionaries(
        st.sampled_from(names), obj, min_size=len(names) // 2, max_size=len(names)
    )


@st.composite
def requirements(draw: st.DrawFn, keys: Sequence[str]) -> Requirement:
    key = draw(st.sampled_from(keys))
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    if op in ("Exists", "DoesNotExist"):
        return Requirement(key, op)
    values = draw(st.lists(st.sampled_from(LABEL_VALUES[key]), min_size=1, max_size=2, unique=True))
    return Requirement(key, op, tuple(sorted(values)))


def label_selectors(keys: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """metav1.LabelSelector dicts; the empty one (it selects everything) included."""

    def as_dict(match: dict[str, str], exprs: list[Requirement]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if match:
            out["matchLabels"] = match
        if exprs:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.op, **({"values": list(r.values)} if r.values else {})}
                for r in exprs
            ]
        return out

    matches = st.dictionaries(
        st.sampled_from(keys), st.sampled_from(("a", "b", "c", "z1", "premium")), max_size=1
    )
    return st.builds(as_dict, matches, st.lists(requirements(keys), max_size=2))


def class_rules(resource: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "names": st.lists(st.sampled_from(NAMES[resource]), max_size=2, unique=True),
            "regex": st.sampled_from(REGEXES),
            "selector": label_selectors(("tier", "pool")),
        },
    )


@st.composite
def tenant_specs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    members = draw(
        st.fixed_dictionaries(
            {"users": st.lists(st.sampled_from(USERS[:3]), min_size=1, max_size=2, unique=True)},
            optional={
                "groups": st.lists(st.sampled_from(GROUPS[:2]), max_size=1),
                "serviceAccounts": st.lists(
                    st.sampled_from(["ns-1:robot", "system:serviceaccount:ns-2:robot"]), max_size=1
                ),
                "allServiceAccountsOfOwnNamespaces": st.booleans(),
            },
        )
    )
    spec: dict[str, Any] = {"members": members}
    if draw(st.integers(0, 4)) == 0:
        spec["namespaceLabelValue"] = f"v-{name}"
    explicit = st.sampled_from((*NAMES[NAMESPACES], "default", "elsewhere"))
    spec["namespaces"] = draw(st.lists(explicit, max_size=2, unique=True))
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(label_selectors(("pool", "zone")))
    for resource, key in CLASS_KEYS.items():
        if draw(st.booleans()):
            spec[key] = draw(class_rules(resource))
    return spec


@st.composite
def worlds(draw: st.DrawFn) -> World:
    tenants = {n: draw(tenant_specs(n)) for n in TENANTS if draw(st.integers(0, 3)) > 0}
    return World({r: draw(objects(r)) for r in KINDS}, tenants)


SELECTOR_KEYS = tuple(LABEL_VALUES)
GET_NAMES = {r: (*names, "default" if r == NAMESPACES else "missing") for r, names in NAMES.items()}


READ_VERBS = ("list", "list", "list", "get", "get", "watch")


@st.composite
def requests(draw: st.DrawFn, verbs: Sequence[str] = READ_VERBS) -> Request:
    caller = Caller(
        draw(st.sampled_from((*USERS[:3], *USERS, "nobody"))),
        tuple(draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True))),
    )
    resource = draw(st.sampled_from(list(KINDS)))
    verb = draw(st.sampled_from(verbs))
    form = draw(st.sampled_from(["json", "table", "table-none", "partial"]))
    if verb == "get":
        return Request(
            caller, resource, verb, form, name=draw(st.sampled_from(GET_NAMES[resource]))
        )
    selector: tuple[Requirement, ...] = ()
    if draw(st.booleans()):
        selector = tuple(draw(st.lists(requirements(SELECTOR_KEYS), min_size=1, max_size=2)))
    fields: tuple[Requirement, ...] = ()
    if draw(st.integers(0, 3)) == 0:
        op = draw(st.sampled_from(["In", "NotIn"]))
        fields = (Requirement("metadata.name", op, (draw(st.sampled_from(NAMES[resource])),)),)
    if verb == "watch":
        return Request(
            caller,
            resource,
            verb,
            form,
            selector,
            initial_events_end=draw(st.booleans()),
            fields=fields,
        )
    limit = draw(st.one_of(st.none(), st.integers(1, 3)))
    return Request(caller, resource, verb, form, selector, limit, fields=fields)


# --- the comparison ----------------------------------------------------------------------------

LIST_KINDS = {"table": "Table", "table-none": "Table", "partial": "PartialObjectMetadataList"}
ONE_KINDS = {"table": "Table", "table-none": "Table", "partial": "PartialObjectMetadata"}
# What a Table row's object is: PartialObjectMetadata by default, none for includeObject=None.
ROW_OBJECTS = {"table": "PartialObjectMetadata", "table-none": None}


def check(env: Environment, world: World, req: Request) -> None:
    full = env.full(world)
    answer = env.execute(req)
    if currently_in_test_context():
        note(f"{req} -> {answer}")
        size = "none" if not answer.names else "one" if len(answer.names) == 1 else "several"
        event(f"{req.verb} {req.form}: {answer.status}, {size}")
    if req.verb == "get":
        check_get(full, req, answer)
        return
    expected = listed(full, req.caller, req.resource, req.selector, req.fields)
    if expected is None:
        assert_forbidden(answer)
        return
    assert answer.status == 200, answer
    got = answer.names
    assert len(got) == len(set(got)), f"an object was answered twice: {got}"
    leaked, missing = set(got) - expected, expected - set(got)
    assert not leaked, f"leaked {sorted(leaked)} (missing {sorted(missing)})"
    assert not missing, f"missing {sorted(missing)}"
    if req.verb == "watch":
        assert set(answer.event_types) <= {"ADDED"}, answer.event_types
        wanted_kind = ONE_KINDS.get(req.form, KINDS[req.resource].kind)
    else:
        wanted_kind = LIST_KINDS.get(req.form, f"{KINDS[req.resource].kind}List")
    assert set(answer.kinds) <= {wanted_kind}, answer.kinds
    check_rows(req, answer)


def check_rows(req: Request, answer: Answer) -> None:
    if req.form in ROW_OBJECTS:
        assert set(answer.row_objects) <= {ROW_OBJECTS[req.form]}, answer.row_objects


def check_get(full: World, req: Request, answer: Answer) -> None:
    seen = visible(full, req.caller, req.resource)
    if seen is None:
        assert_forbidden(answer)
    elif req.name in seen:
        assert answer.status == 200, answer
        assert answer.names == [req.name], answer
        assert answer.kinds == [ONE_KINDS.get(req.form, KINDS[req.resource].kind)], answer
        check_rows(req, answer)
    else:
        assert answer.status == 404, answer
        kind = KINDS[req.resource]
        details = {"name": req.name, "kind": req.resource}
        if kind.group:
            details["group"] = kind.group
        assert answer.body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'{kind.qualified} "{req.name}" not found',
            "reason": "NotFound",
            "details": details,
            "code": 404,
        }


def assert_forbidden(answer: Answer) -> None:
    """Not filtered for this caller: passed through impersonated, and RBAC grants it nothing."""
    assert answer.status == 403, answer
    assert answer.body["reason"] == "Forbidden", answer.body


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # No explain phase: it replays the failure hundreds of times for little more information.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(world=worlds(), reqs=st.lists(requests(), min_size=1, max_size=6))
@pytest.mark.timeout(600)
def test_tenant_reads_through_proxy_equal_the_oracle(
    env: Environment, world: World, reqs: list[Request]
) -> None:
    env.apply(world)
    for req in reqs:
        check(env, world, req)


# --- open watches across world changes ---------------------------------------------------------


class OpenWatch:
    """A watch held open across a world change: what its client believes exists, by name."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.present: set[str] = set()
        self.log: list[str] = []

    def feed(self, event: Mapping[str, Any]) -> None:
        """Apply one event as a client does, refusing what no correct stream sends."""
        kind, obj = event["type"], event["object"]
        assert kind != "ERROR", f"the watch sent an error: {obj}"
        if kind == "BOOKMARK":
            return
        seen = Answer(200)
        seen.record(obj)
        self.log.append(f"{kind} {seen.names}")
        for name in seen.names:
            if kind == "ADDED":
                assert name not in self.present, f"ADDED twice: {name} ({self.log})"
                self.present.add(name)
            else:
                # MODIFIED or DELETED of an object never shown tells of one it must not see.
                assert name in self.present, f"{kind} of unseen {name} ({self.log})"
                if kind == "DELETED":
                    self.present.discard(name)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        return orjson.loads(line) if line else None

    async def initial(self) -> None:
        """Read to the initial-events-end bookmark."""
        while (event := await self.next(5)) is not None:
            self.feed(event)
            annotations = (event["object"].get("metadata") or {}).get("annotations") or {}
            if event["type"] == "BOOKMARK" and annotations.get("k8s.io/initial-events-end"):
                return
        raise AssertionError(f"the watch ended during its initial events ({self.log})")

    async def settle(self, target: frozenset[str] | None, within: float) -> None:
        """Until the client's set equals `target` at two bookmarks in a row (the upstream
        sends one after each quiet `bookmark_interval`), so late events are caught too.
        `target` None: the caller lost its view; ending the stream is then right as well."""
        loop = asyncio.get_running_loop()
        deadline, calm = loop.time() + within, 0
        want = target or frozenset()
        while calm < 2:
            try:
                event = await self.next(max(0.0, deadline - loop.time()))
            except TimeoutError:
                leaked, missing = sorted(self.present - want), sorted(want - self.present)
                raise AssertionError(
                    f"after {within}s: leaked {leaked}, missing {missing} ({self.log})"
                ) from None
            if event is None:
                assert target is None, f"the watch ended ({self.log})"
                return
            self.feed(event)
            if event["type"] == "BOOKMARK":
                calm = calm + 1 if self.present == want else 0

    async def close(self) -> None:
        self.response.close()


async def open_watch(env: Environment, req: Request) -> OpenWatch | int:
    """An open watch past its initial events, or the status it was refused with."""
    params = [("watch", "1"), ("allowWatchBookmarks", "true"), *_form_params(req)]
    params += [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
    params += req.selector_params()
    url = env._url(KINDS[req.resource].path, params)
    resp = await env._session(req.caller).get(url, headers={"Accept": ACCEPT_ONE[req.form]})
    if resp.status != 200:
        resp.close()
        return resp.status
    watch = OpenWatch(resp)
    try:
        await watch.initial()
    except BaseException:
        resp.close()
        raise
    return watch


def watch_through_change(env: Environment, before: World, after: World, req: Request) -> None:
    """Open `req`'s watch in `before`, change the cluster to `after`, and compare what the
    watch then shows with the oracle's answer for `after`."""
    initial = listed(env.full(before), req.caller, req.resource, req.selector, req.fields)
    env.apply(before)
    watch = env.run(open_watch(env, req))
    assert not isinstance(watch, int), f"watch refused: {watch}"
    try:
        assert frozenset(watch.present) == initial, watch.log
        env.apply(after)
        target = listed(env.full(after), req.caller, req.resource, req.selector, req.fields)
        if currently_in_test_context():
            note(f"{req}: {sorted(initial or ())} -> {sorted(target or ())}")
        env.run(watch.settle(target, within=2.0))
    finally:
        env.run(watch.close())


@settings(
    max_examples=TRANSITIONS,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(before=worlds(), after=worlds(), req=requests(verbs=("watch",)))
@pytest.mark.timeout(600)
def test_open_watch_follows_the_world_into_the_next(
    env: Environment, before: World, after: World, req: Request
) -> None:
    """Whatever changes (labels, claims, tenants, members, rules), an open watch ends up
    showing exactly the oracle's answer for the new world, never an unseen object's change."""
    assume(listed(env.full(before), req.caller, req.resource, req.selector, req.fields) is not None)
    watch_through_change(env, before, after, req)


# --- regressions the properties found (minimal examples; fixed in 133b1b1, f3d1a6f, 4c99e0b) ---

U0_TENANT = {"t0": {"members": {"users": ["u0"]}}}


def test_tenancy_change_keeps_the_watch_label_selector(env: Environment) -> None:
    """u0 watches namespaces with `env=a`; ns-0 (no env label) joins u0's tenant: the watch
    must stay empty, as the API server's own watch with that selector would."""
    before = World({NAMESPACES: {"ns-0": Obj()}}, U0_TENANT)
    after = World({NAMESPACES: {"ns-0": Obj(labels={TENANT_LABEL: "t0"})}}, U0_TENANT)
    req = Request(Caller("u0"), NAMESPACES, "watch", "json", (Requirement("env", "In", ("a",)),))
    watch_through_change(env, before, after, req)


@pytest.mark.parametrize("form", ["table", "partial"])
def test_namespace_joining_tenant_reveals_its_pvs_on_table_and_metadata_watches(
    env: Environment, form: str
) -> None:
    """`kubectl get pv -w` (a Table watch) as u0, whose tenant t0 owns no namespace yet; ns-0,
    holding pv-0's claim, is labelled for t0: pv-0 must be ADDED (the JSON watch does it)."""
    pv = {"pv-0": Obj(claim="ns-0")}
    before = World({NAMESPACES: {"ns-0": Obj()}, PVS: pv}, U0_TENANT)
    after = World({NAMESPACES: {"ns-0": Obj(labels={TENANT_LABEL: "t0"})}, PVS: pv}, U0_TENANT)
    watch_through_change(env, before, after, Request(Caller("u0"), PVS, "watch", form))


async def _set_latency(env: Environment, seconds: float) -> None:
    env.emulator.set_latency(seconds)


def test_every_tenancy_change_reveals_newly_owned_objects_on_open_watch(env: Environment) -> None:
    """u0 (tenants t1 and t2, no namespaces) watches namespaces; t1 gains ns-1, then t2 gains
    ns-2 while the proxy is still reading ns-1 (a slow API server): both must be ADDED."""
    two: dict[str, Spec] = {
        "t1": {"members": {"users": ["u0"]}},
        "t2": {"members": {"users": ["u0"]}},
    }
    namespaces = {NAMESPACES: {"ns-1": Obj(), "ns-2": Obj()}}
    env.apply(World(namespaces, two))
    watch = env.run(open_watch(env, Request(Caller("u0"), NAMESPACES, "watch", "json")))
    assert not isinstance(watch, int), watch
    try:
        env.run(_set_latency(env, 0.5))
        t1 = {**two, "t1": {"members": {"users": ["u0"]}, "namespaces": ["ns-1"]}}
        env.apply(World(namespaces, t1))
        t2 = {**t1, "t2": {"members": {"users": ["u0"]}, "namespaces": ["ns-2"]}}
        env.apply(World(namespaces, t2))
        env.run(watch.settle(frozenset({"ns-1", "ns-2"}), within=3.0))
    finally:
        env.run(_set_latency(env, 0))
        env.run(watch.close())


def test_tenancy_change_reveals_objects_on_metadata_watch(env: Environment) -> None:
    """u0's tenant t1 selects nodes with pool=b, then with `pool` Exists: node-0 (pool=a) must
    be ADDED on u0's PartialObjectMetadata watch of nodes (JSON and Table watches do it)."""
    node = {NODES: {"node-0": Obj(labels={"pool": "a"})}}
    exists = {"matchExpressions": [{"key": "pool", "operator": "Exists"}]}
    before = World(
        node, {"t1": {**U0_TENANT["t0"], "nodeSelector": {"matchLabels": {"pool": "b"}}}}
    )
    after = World(node, {"t1": {**U0_TENANT["t0"], "nodeSelector": exists}})
    watch_through_change(env, before, after, Request(Caller("u0"), NODES, "watch", "partial"))
