"""Hypothesis strategies of the differential test: worlds (objects, tenants of the config file,
Tenant CRs and Capsule, RoleBindings), requests, and watch transitions (a random next world, or
one targeted edit: a Capsule namespace label, a RoleBinding for the caller, a class name added
to a Tenant CR, a CRD group added to an allowlist).

Names are drawn from small fixed sets so that rules, labels and requests keep meeting: tenant
names shared across sources, label values naming tenants that exist or not, regexes that match
some class names whole and others only in part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from differential_env import KINDS, Request
from hypothesis import strategies as st
from oracle import (
    CAPSULE_LABEL,
    CLAIM_PATH,
    CLASS_KEYS,
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
    TENANT_LABEL,
    WIDGETS,
    Caller,
    Obj,
    Requirement,
    RoleBinding,
    Spec,
    Subject,
    World,
)

# --- the names ---------------------------------------------------------------------------------

NAMES: dict[str, tuple[str, ...]] = {
    NAMESPACES: tuple(f"ns-{i}" for i in range(6)),
    NODES: tuple(f"node-{i}" for i in range(4)),
    PVS: tuple(f"pv-{i}" for i in range(5)),
    STORAGE_CLASSES: ("gold", "gold-2", "silver", "team-x"),
    INGRESS_CLASSES: ("nginx", "nginx-a", "traefik", "team-x"),
    PRIORITY_CLASSES: ("high", "team-a-high", "low", "team-x"),
    RUNTIME_CLASSES: ("gvisor", "kata", "runc", "team-x"),
    GATEWAY_CLASSES: ("istio", "envoy-gold", "team-x"),
    SNAPSHOT_CLASSES: ("csi-gold", "csi-snap", "team-x"),
    CRDS: (
        "things.a.example.com",
        "gadgets.a.example.com",
        "items.b.example.com",
        "parts.team-x.example.com",
    ),
    WIDGETS: tuple(f"w-{i}" for i in range(4)),
    CSI_DRIVERS: ("csi-a.example.com", "csi-b.example.com", "team-x.example.com"),
}
assert set(NAMES) == set(KINDS)
CRD_GROUPS = ("a.example.com", "b.example.com", "team-x.example.com", "example.com")
CR_TENANTS = ("t0", "t1", "t2")
CAPSULE_TENANTS = ("c0", "c1")
CONFIG_TENANTS = ("cfg", "t0")  # t0: a config tenant named as a Tenant CR
USERS = (
    "u0",
    "u1",
    "u2",
    "system:serviceaccount:ns-1:robot",
    "system:serviceaccount:ns-2:robot",
)
GROUPS_OF_CALLERS = ("g0", "g1", "g-cfg")
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "pool": ("a", "b", "c"),
    "zone": ("z1", "z2"),
    "tier": ("premium", "standard"),
    "env": ("a", "b"),
    TENANT_LABEL: ("t0", "t1", "t2", "cfg", "v-t0", "c0", "ghost"),
    CAPSULE_LABEL: ("c0", "c1", "t1", "ghost"),
    "kubernetes.io/metadata.name": ("ns-0", "ns-1", "ns-3"),
}
REGEXES = ("gold.*", ".*-x", "team-.*", "gol", "(nginx|high|kata)", "[a-m].*", ".*gold.*")
OBJECT_LABEL_KEYS = {
    NAMESPACES: (TENANT_LABEL, CAPSULE_LABEL, "env"),
    NODES: ("pool", "zone"),
    PVS: (TENANT_LABEL, CAPSULE_LABEL, "tier"),
    **{r: ("tier", "pool") for r in (*CLASS_KEYS, CRDS, WIDGETS, CSI_DRIVERS)},
}
NAMESPACE_VALUES = (*NAMES[NAMESPACES], "default", "elsewhere")
# The generic rule's resources: a custom one, a built-in one found by discovery, and PVs (a
# generic rule replaces their built-in one).
GENERIC_FIELDS = {WIDGETS: "spec.namespace", CSI_DRIVERS: "spec.namespace", PVS: CLAIM_PATH}


# --- objects -----------------------------------------------------------------------------------


def _some(draw: st.DrawFn, names: Sequence[str], odds: int = 3) -> list[str]:
    """Each name with probability (odds-1)/odds (shrinking towards none)."""
    return [n for n in names if draw(st.integers(0, odds - 1)) > 0]


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True once in `n` draws; shrinks towards False (a rule or tenant less)."""
    return draw(st.integers(0, n - 1)) == n - 1


def label_sets(keys: Sequence[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={k: st.sampled_from(LABEL_VALUES[k]) for k in keys})


def _field(path: str) -> st.SearchStrategy[dict[str, str]]:
    return st.sampled_from((None, *NAMESPACE_VALUES)).map(lambda v: {} if v is None else {path: v})


def object_sets(resource: str) -> st.SearchStrategy[dict[str, Obj]]:
    labels = label_sets(OBJECT_LABEL_KEYS[resource])
    names = NAMES[resource]
    if resource == CRDS:
        # A CRD's group is in its name.
        crd = {n: st.builds(Obj, labels, st.just({GROUP_PATH: n.split(".", 1)[1]})) for n in names}
        chosen = st.lists(st.sampled_from(names), min_size=len(names) // 2, unique=True)
        return chosen.flatmap(lambda some: st.fixed_dictionaries({n: crd[n] for n in some}))
    fields = _field(CLAIM_PATH if resource == PVS else "spec.namespace")
    obj = st.builds(Obj, labels, fields if resource in (PVS, WIDGETS) else st.just({}))
    return st.dictionaries(
        st.sampled_from(names), obj, min_size=len(names) // 2, max_size=len(names)
    )


# --- selectors and rules -----------------------------------------------------------------------


@st.composite
def requirements(draw: st.DrawFn, keys: Sequence[str]) -> Requirement:
    key = draw(st.sampled_from(keys))
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    if op in ("Exists", "DoesNotExist"):
        return Requirement(key, op)
    values = draw(st.lists(st.sampled_from(LABEL_VALUES[key]), min_size=1, max_size=2, unique=True))
    return Requirement(key, op, tuple(sorted(values)))


def _expressions(reqs: list[Requirement]) -> list[dict[str, Any]]:
    return [
        {"key": r.key, "operator": r.op, **({"values": list(r.values)} if r.values else {})}
        for r in reqs
    ]


def _match_labels(keys: Sequence[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(
        st.sampled_from(keys), st.sampled_from(("a", "b", "c", "z1", "premium")), max_size=1
    )


def label_selectors(keys: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """metav1.LabelSelector dicts; the empty one (it selects everything) included."""

    def as_dict(match: dict[str, str], exprs: list[Requirement]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if match:
            out["matchLabels"] = match
        if exprs:
            out["matchExpressions"] = _expressions(exprs)
        return out

    return st.builds(as_dict, _match_labels(keys), st.lists(requirements(keys), max_size=2))


def some_names(resource: str) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(NAMES[resource]), max_size=2, unique=True)


def class_rules(resource: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "names": some_names(resource),
            "regex": st.sampled_from(REGEXES),
            "selector": label_selectors(("tier", "pool")),
        },
    )


@st.composite
def generic_rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Tenant CR `resources`: at most one rule per resource."""
    chosen = draw(st.lists(st.sampled_from(sorted(GENERIC_FIELDS)), max_size=2, unique=True))
    out = []
    for resource in chosen:
        rule = draw(
            st.fixed_dictionaries(
                {"group": st.just(GROUPS[resource]), "resource": st.just(resource)},
                optional={
                    "names": some_names(resource),
                    "selector": label_selectors(("tier", "pool")),
                    "fieldPath": st.sampled_from((GENERIC_FIELDS[resource], "spec.missing")),
                },
            )
        )
        out.append(rule)
    return out


# --- tenants -----------------------------------------------------------------------------------


@st.composite
def cr_specs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A Tenant CR's spec (camelCase)."""
    members = draw(
        st.fixed_dictionaries(
            {"users": st.lists(st.sampled_from(USERS[:3]), min_size=1, max_size=2, unique=True)},
            optional={
                "groups": st.lists(st.sampled_from(GROUPS_OF_CALLERS[:2]), max_size=1),
                "serviceAccounts": st.lists(
                    st.sampled_from(["ns-1:robot", "system:serviceaccount:ns-2:robot"]), max_size=1
                ),
                "allServiceAccountsOfOwnNamespaces": st.booleans(),
            },
        )
    )
    spec: dict[str, Any] = {"members": members}
    if one_in(draw, 5):
        spec["namespaceLabelValue"] = f"v-{name}"
    spec["namespaces"] = draw(st.lists(st.sampled_from(NAMESPACE_VALUES), max_size=2, unique=True))
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(label_selectors(("pool", "zone")))
    for resource, key in CLASS_KEYS.items():
        if one_in(draw, 3):
            spec[key] = draw(class_rules(resource))
    if one_in(draw, 3):
        spec["crdApiGroups"] = draw(st.lists(st.sampled_from(CRD_GROUPS), max_size=2, unique=True))
    if one_in(draw, 3):
        spec["resources"] = draw(generic_rules())
    return spec


_CONFIG_MEMBER_KEYS = {
    "serviceAccounts": "serviceaccounts",
    "allServiceAccountsOfOwnNamespaces": "all_serviceaccounts_of_own_namespaces",
}


def as_config(spec: Spec) -> dict[str, Any]:
    """A Tenant CR spec as the config file writes it (snake_case; no label value there)."""
    out: dict[str, Any] = {
        "members": {_CONFIG_MEMBER_KEYS.get(k, k): v for k, v in spec["members"].items()},
        "namespaces": list(spec.get("namespaces") or ()),
    }
    if "nodeSelector" in spec:
        out["node_selector"] = spec["nodeSelector"]
    for resource, key in CLASS_KEYS.items():
        if key in spec:
            out[resource] = spec[key]
    if "crdApiGroups" in spec:
        out["crd_api_groups"] = spec["crdApiGroups"]
    if "resources" in spec:
        out["resources"] = [
            {("field_path" if k == "fieldPath" else k): v for k, v in rule.items()}
            for rule in spec["resources"]
        ]
    return out


def capsule_allowed(resource: str) -> st.SearchStrategy[dict[str, Any]]:
    """Capsule's SelectorAllowedListSpec: allowed, allowedRegex, an inline LabelSelector."""
    return st.fixed_dictionaries(
        {},
        optional={
            "allowed": some_names(resource),
            "allowedRegex": st.sampled_from(REGEXES),
            "matchLabels": _match_labels(("tier", "pool")),
            "matchExpressions": st.lists(requirements(("tier", "pool")), max_size=2).map(
                _expressions
            ),
        },
    )


OWNERS = st.one_of(
    st.builds(lambda n: {"kind": "User", "name": n}, st.sampled_from(USERS[:3])),
    st.builds(lambda n: {"kind": "Group", "name": n}, st.sampled_from(GROUPS_OF_CALLERS[:2])),
    st.builds(lambda n: {"kind": "ServiceAccount", "name": n}, st.sampled_from(USERS[3:])),
)


@st.composite
def capsule_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A Capsule v1beta2 Tenant's spec."""
    spec: dict[str, Any] = {"owners": draw(st.lists(OWNERS, min_size=1, max_size=2))}
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(
            st.dictionaries(st.sampled_from(("pool", "zone")), st.sampled_from(("a", "b", "z1")))
        )
    for resource in (STORAGE_CLASSES, PRIORITY_CLASSES, RUNTIME_CLASSES):
        if draw(st.booleans()):
            spec[CLASS_KEYS[resource]] = draw(capsule_allowed(resource))
    if draw(st.booleans()):
        spec["ingressOptions"] = {"allowedClasses": draw(capsule_allowed(INGRESS_CLASSES))}
    return spec


# --- RoleBindings ------------------------------------------------------------------------------

SUBJECTS = st.one_of(
    st.builds(Subject, st.just("User"), st.sampled_from(USERS)),
    st.builds(Subject, st.just("Group"), st.sampled_from(GROUPS_OF_CALLERS)),
    st.builds(
        Subject,
        st.just("ServiceAccount"),
        st.just("robot"),
        st.sampled_from(("ns-1", "ns-2", None)),
    ),
)


@st.composite
def rolebindings(draw: st.DrawFn, namespaces: Sequence[str]) -> dict[str, RoleBinding]:
    out = {}
    for i in range(draw(st.integers(0, 2))):
        namespace = draw(st.sampled_from(namespaces))
        subjects = tuple(draw(st.lists(SUBJECTS, min_size=1, max_size=2)))
        out[f"{namespace}/rb-{i}"] = RoleBinding(namespace, subjects)
    return out


# --- worlds ------------------------------------------------------------------------------------


@st.composite
def worlds(draw: st.DrawFn) -> World:
    objects = {r: draw(object_sets(r)) for r in KINDS}
    tenants = {n: draw(cr_specs(n)) for n in _some(draw, CR_TENANTS, 4)}
    if one_in(draw, 5):
        tenants["cfg"] = draw(cr_specs("cfg"))  # a Tenant CR named as the config's tenant
    capsule = {n: draw(capsule_specs()) for n in _some(draw, CAPSULE_TENANTS)}
    if one_in(draw, 5):
        capsule["t1"] = draw(capsule_specs())  # a Capsule Tenant named as a Tenant CR
    config = {n: as_config(draw(cr_specs(n))) for n in _some(draw, CONFIG_TENANTS[:1], 4)}
    if one_in(draw, 5):
        config["t0"] = as_config(draw(cr_specs("t0")))
    if "cfg" in config:
        config["cfg"]["members"]["groups"] = [*config["cfg"]["members"].get("groups", ()), "g-cfg"]
    namespaces = [*sorted(objects[NAMESPACES]), "default"]
    bindings = draw(rolebindings(namespaces))
    return World(objects, tenants, capsule, config, bindings)


def replace(world: World, **changes: Any) -> World:
    return dataclasses.replace(world, **changes)


# --- requests ----------------------------------------------------------------------------------

GET_NAMES = {r: (*names, "default" if r == NAMESPACES else "missing") for r, names in NAMES.items()}
SELECTOR_KEYS = tuple(LABEL_VALUES)
READ_VERBS = ("list", "list", "list", "get", "get", "watch")
FORMS = ("json", "table", "table-none", "partial")


def callers() -> st.SearchStrategy[Caller]:
    return st.builds(
        Caller,
        st.sampled_from((*USERS[:3], *USERS, "nobody")),
        st.lists(st.sampled_from(GROUPS_OF_CALLERS), max_size=2, unique=True).map(tuple),
    )


@st.composite
def requests(
    draw: st.DrawFn,
    verbs: Sequence[str] = READ_VERBS,
    resources: Sequence[str] = tuple(KINDS),
    caller: Caller | None = None,
) -> Request:
    who = caller if caller is not None else draw(callers())
    resource = draw(st.sampled_from(resources))
    verb = draw(st.sampled_from(verbs))
    form = draw(st.sampled_from(FORMS))
    if verb == "get":
        return Request(who, resource, verb, form, name=draw(st.sampled_from(GET_NAMES[resource])))
    selector: tuple[Requirement, ...] = ()
    if draw(st.booleans()):
        selector = tuple(draw(st.lists(requirements(SELECTOR_KEYS), min_size=1, max_size=2)))
    fields: tuple[Requirement, ...] = ()
    if draw(st.integers(0, 3)) == 0:
        op = draw(st.sampled_from(["In", "NotIn"]))
        fields = (Requirement("metadata.name", op, (draw(st.sampled_from(NAMES[resource])),)),)
    if verb == "watch":
        end = draw(st.booleans())
        return Request(who, resource, verb, form, selector, initial_events_end=end, fields=fields)
    limit = draw(st.one_of(st.none(), st.integers(1, 3)))
    return Request(who, resource, verb, form, selector, limit, fields=fields)


# --- transitions -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transition:
    """An open watch's request, the world it opens in, and the world it must follow into."""

    how: str
    before: World
    after: World
    req: Request


def with_member(spec: Spec | None, user: str) -> dict[str, Any]:
    """A Tenant CR spec (a bare one when None) that also names `user`."""
    out = dict(spec or {"members": {"users": []}})
    members = dict(out.get("members") or {})
    members["users"] = sorted({*(members.get("users") or ()), user})
    out["members"] = members
    return out


def _labelled(obj: Obj, key: str, value: str | None) -> Obj:
    labels = {k: v for k, v in obj.labels.items() if k != key}
    return dataclasses.replace(obj, labels=labels | ({key: value} if value else {}))


@st.composite
def transitions(draw: st.DrawFn) -> Transition:
    how = draw(
        st.sampled_from(
            ("world", "world", "capsule-label", "rolebinding", "tenant-class", "crd-group")
        )
    )
    before = draw(worlds())
    if how == "world":
        return Transition(how, before, draw(worlds()), draw(requests(verbs=("watch",))))
    caller = draw(callers())
    if how == "capsule-label":
        return _capsule_label_change(draw, before, caller)
    if how == "rolebinding":
        return _rolebinding_change(draw, before, caller)
    return _tenant_edit(draw, how, before, caller)


def _capsule_label_change(draw: st.DrawFn, before: World, caller: Caller) -> Transition:
    """Capsule tenant c0 names the caller; a namespace's Capsule label moves."""
    owners = [{"kind": "User", "name": caller.user}]
    capsule = {**before.capsule, "c0": {**before.capsule.get("c0", {}), "owners": owners}}
    before = replace(before, capsule=capsule)
    namespaces = dict(before.objects[NAMESPACES])
    name = draw(st.sampled_from(sorted(namespaces)))
    current = namespaces[name].labels.get(CAPSULE_LABEL)
    value = draw(st.sampled_from([v for v in (None, "c0", "c1", "t1") if v != current]))
    namespaces[name] = _labelled(namespaces[name], CAPSULE_LABEL, value)
    after = replace(before, objects={**before.objects, NAMESPACES: namespaces})
    req = draw(requests(verbs=("watch",), resources=(NAMESPACES, PVS), caller=caller))
    return Transition("capsule-label", before, after, req)


def _rolebinding_change(draw: st.DrawFn, before: World, caller: Caller) -> Transition:
    """The caller (a member of t0) gains or loses a RoleBinding in some namespace."""
    t0 = with_member(before.tenants.get("t0"), caller.user)
    before = replace(before, tenants={**before.tenants, "t0": t0})
    namespace = draw(st.sampled_from(sorted(before.objects[NAMESPACES])))
    choices = [Subject("User", caller.user)] + [Subject("Group", g) for g in caller.groups]
    account = caller.user.split(":")
    if caller.user.startswith("system:serviceaccount:"):
        local = None if account[2] == namespace else account[2]
        choices.append(Subject("ServiceAccount", account[3], local))
    binding = RoleBinding(namespace, (draw(st.sampled_from(choices)),))
    without = dict(before.rolebindings)
    with_it = {**without, f"{namespace}/rb-watched": binding}
    created = draw(st.booleans())
    first, then = (without, with_it) if created else (with_it, without)
    req = draw(requests(verbs=("watch",), resources=(NAMESPACES,), caller=caller))
    return Transition(
        "rolebinding", replace(before, rolebindings=first), replace(before, rolebindings=then), req
    )


def _tenant_edit(draw: st.DrawFn, how: str, before: World, caller: Caller) -> Transition:
    """A Tenant CR naming the caller gains a class name, or a CRD group, in a rule it has."""
    name = draw(st.sampled_from(CR_TENANTS))
    spec = with_member(before.tenants.get(name), caller.user)
    if how == "tenant-class":
        resource = draw(st.sampled_from(sorted(CLASS_KEYS)))
        key, pool = CLASS_KEYS[resource], NAMES[resource]
        rule = dict(spec.get(key) or {})
        listed = list(rule.get("names") or ())
    else:
        resource, key, pool = CRDS, "crdApiGroups", CRD_GROUPS
        listed = list(spec.get(key) or ()) or [draw(st.sampled_from(pool))]
    added = draw(st.sampled_from([v for v in pool if v not in listed]))
    if how == "tenant-class":
        first = {**spec, key: {**rule, "names": listed}}
        then = {**spec, key: {**rule, "names": [*listed, added]}}
    else:
        first, then = {**spec, key: listed}, {**spec, key: [*listed, added]}
    before = replace(before, tenants={**before.tenants, name: first})
    after = replace(before, tenants={**before.tenants, name: then})
    req = draw(requests(verbs=("watch",), resources=(resource,), caller=caller))
    return Transition(how, before, after, req)
