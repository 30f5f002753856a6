"""Differential property test of tenant filtering, end to end (issue 4, "Done when", first bullet).

Hypothesis draws a world (namespaces, nodes, PVs, storage/ingress/priority/runtime/gateway/
volumesnapshot classes, CRDs, a custom and a built-in resource for the generic rule; tenants of
the config file, Tenant CRs and Capsule Tenants, same names across sources included; RoleBindings)
and requests (list in JSON, Table, Table with includeObject=None and PartialObjectMetadataList,
with and without client label/field selectors and `limit` pagination; get by name; watch initial
events) as random users, groups and ServiceAccounts.
The world is written into the emulator as admin, the proxy's index is awaited until it holds
exactly that world, then every request goes through the proxy over real TLS with a client
certificate, and the names it answers must equal those of `oracle` (written from the issue's
rules, importing nothing of tenant_proxy's filtering or tenancy).

One emulator and one proxy serve the whole module: they run on an event loop in a background
thread (differential_env.py), so the test itself is an ordinary synchronous `@given` test and
Hypothesis shrinks a failure to a minimal world and request.

A second property holds a watch open while the world changes into another one (a random one, or
a targeted edit: a Capsule namespace label, a RoleBinding for the caller, a class name added to
a Tenant CR, a CRD group added to an allowlist): the watch must end up showing exactly the
oracle's answer for the new world, and never a MODIFIED or DELETED of an object it did not show.
The regressions at the end are minimal examples the properties found, each a plain test now
that its bug is fixed.

Example counts come from a Hypothesis profile: `differential` (CI: 200 reads, 50 transitions)
or, with DIFFERENTIAL_PROFILE, `differential-hunt` (ten times more, for a bug hunt) or
`differential-smoke` (a tenth, while editing).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from differential_env import ACCEPT_LIST, ACCEPT_ONE, KINDS, WAIT, Answer, Environment, Request
from differential_strategies import Transition, requests, transitions, worlds
from hypothesis import HealthCheck, Phase, assume, currently_in_test_context, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from oracle import (
    CAPSULE_LABEL,
    NAMESPACES,
    NODES,
    PRIORITY_CLASSES,
    PVS,
    TENANT_LABEL,
    Caller,
    Obj,
    Requirement,
    RoleBinding,
    Spec,
    Subject,
    World,
    claimed,
    listed,
    visible,
)

# The property tests here draw worlds for tens of seconds each: `slow` starts the whole module
# first (tests/conftest.py), all its tests on the one module `env`.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

hypothesis_settings.register_profile(
    "differential",
    max_examples=200,
    deadline=None,
    # No explain phase: it replays the failure hundreds of times for little more information.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
hypothesis_settings.register_profile(
    "differential-hunt", hypothesis_settings.get_profile("differential"), max_examples=2000
)
hypothesis_settings.register_profile(
    "differential-smoke", hypothesis_settings.get_profile("differential"), max_examples=20
)
PROFILE = hypothesis_settings.get_profile(os.environ.get("DIFFERENTIAL_PROFILE", "differential"))
READS = hypothesis_settings(PROFILE)
TRANSITIONS = hypothesis_settings(PROFILE, max_examples=PROFILE.max_examples // 4)


@pytest.fixture(scope="module")
def env() -> Iterator[Environment]:
    """One emulator and proxy for the whole module."""
    with tempfile.TemporaryDirectory(prefix="differential-") as tmp:
        environment = Environment(Path(tmp))
        environment.start()
        try:
            yield environment
        finally:
            environment.stop()


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
        event(f"resource {req.resource}: {answer.status}")
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


@READS
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

    def __init__(self, response: aiohttp.ClientResponse, present: frozenset[str] = frozenset()):
        self.response = response
        self.present: set[str] = set(present)
        self.log: list[str] = []
        self.rv = ""  # the last resourceVersion seen, as a reflector keeps it

    def feed(self, event: Mapping[str, Any]) -> None:
        """Apply one event as a client does, refusing what no correct stream sends."""
        kind, obj = event["type"], event["object"]
        assert kind != "ERROR", f"the watch sent an error: {obj}"
        self.rv = (obj.get("metadata") or {}).get("resourceVersion") or self.rv
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
        while (event := await self.next(WAIT)) is not None:
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
    params = [("watch", "1"), ("allowWatchBookmarks", "true"), *req.form_params()]
    params += [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
    params += req.selector_params()
    url = env.url(KINDS[req.resource].path, params)
    headers = {"Accept": ACCEPT_ONE[req.form]}
    resp = await env.session(req.caller).get(url, headers=headers)
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
    env.apply(before)
    initial = listed(env.full(before), req.caller, req.resource, req.selector, req.fields)
    watch = env.run(open_watch(env, req))
    assert not isinstance(watch, int), f"watch refused: {watch}"
    try:
        assert frozenset(watch.present) == initial, watch.log
        env.apply(after)
        target = listed(env.full(after), req.caller, req.resource, req.selector, req.fields)
        if currently_in_test_context():
            note(f"{req}: {sorted(initial or ())} -> {sorted(target or ())}")
        env.run(watch.settle(target, within=WAIT))
    finally:
        env.run(watch.close())


async def watch_from(
    env: Environment, req: Request, rv: str, present: frozenset[str]
) -> OpenWatch | int:
    """A watch resumed after `rv` by a client holding `present` (no initial events)."""
    params = [("watch", "1"), ("allowWatchBookmarks", "true"), ("resourceVersion", rv)]
    params += [*req.form_params(), *req.selector_params()]
    url = env.url(KINDS[req.resource].path, params)
    resp = await env.session(req.caller).get(url, headers={"Accept": ACCEPT_ONE[req.form]})
    if resp.status != 200:
        resp.close()
        return resp.status
    watch = OpenWatch(resp, present)
    watch.rv = rv
    return watch


async def list_for_watch(env: Environment, req: Request) -> tuple[frozenset[str], str]:
    """What a reflector lists first: the names and the list's resourceVersion."""
    url = env.url(KINDS[req.resource].path, [*req.form_params(), *req.selector_params()])
    headers = {"Accept": ACCEPT_LIST[req.form]}
    async with env.session(req.caller).get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        doc = orjson.loads(await resp.read())
    answer = Answer(200)
    answer.record(doc)
    return frozenset(answer.names), str(doc["metadata"]["resourceVersion"])


def resume_through_change(env: Environment, before: World, after: World, req: Request) -> None:
    """List in `before`, watch from the list's resourceVersion until its first bookmark, cut
    the connection, change the cluster to `after`, resume from the last resourceVersion seen:
    the client's set must become the oracle's for `after`, each transition once."""
    env.apply(before)
    initial = listed(env.full(before), req.caller, req.resource, req.selector, req.fields)
    names, rv = env.run(list_for_watch(env, req))
    assert names == initial
    watch = env.run(watch_from(env, req, rv, names))
    assert not isinstance(watch, int), f"watch refused: {watch}"
    try:
        env.run(watch.settle(initial, within=WAIT))  # past a bookmark or two: the client's rv
    finally:
        env.run(watch.close())
    env.apply(after)
    target = listed(env.full(after), req.caller, req.resource, req.selector, req.fields)
    if currently_in_test_context():
        note(f"{req}: {sorted(initial or ())} -> cut -> {sorted(target or ())}")
    resumed = env.run(watch_from(env, req, watch.rv, frozenset(watch.present)))
    if isinstance(resumed, int):
        # A caller no longer in any tenant passes through to RBAC, as the API server would.
        assert target is None, f"resume refused: {resumed}"
        return
    try:
        env.run(resumed.settle(target, within=WAIT))
    finally:
        env.run(resumed.close())


def filtered_in(env: Environment, world: World, req: Request) -> bool:
    return listed(env.full(world), req.caller, req.resource, req.selector, req.fields) is not None


@TRANSITIONS
@given(change=transitions())
@pytest.mark.timeout(600)
def test_open_watch_follows_the_world_into_the_next(env: Environment, change: Transition) -> None:
    """Whatever changes (labels, claims, tenants of any source, members, rules, RoleBindings),
    an open watch ends up showing exactly the oracle's answer for the new world, never an
    unseen object's change."""
    event(f"transition: {change.how}")
    assume(filtered_in(env, change.before, change.req))
    watch_through_change(env, change.before, change.after, change.req)


@TRANSITIONS
@given(change=transitions())
@pytest.mark.timeout(600)
def test_a_resumed_watch_catches_up_with_what_changed_while_it_was_cut(
    env: Environment, change: Transition
) -> None:
    """As client-go's reflector: list, watch from the list's resourceVersion, lose the
    connection, resume from the last resourceVersion seen after any change of the world."""
    event(f"transition: {change.how}")
    assume(filtered_in(env, change.before, change.req))
    resume_through_change(env, change.before, change.after, change.req)


# --- regressions the properties found (minimal examples; fixed in 133b1b1, f3d1a6f, 4c99e0b,
# and on main by 795b033 and 2c88d81 while this differential test was being widened) -----------

U0_TENANT: dict[str, Spec] = {"t0": {"members": {"users": ["u0"]}}}


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
    pv = {"pv-0": claimed("ns-0")}
    before = World({NAMESPACES: {"ns-0": Obj()}, PVS: pv}, U0_TENANT)
    after = World({NAMESPACES: {"ns-0": Obj(labels={TENANT_LABEL: "t0"})}, PVS: pv}, U0_TENANT)
    watch_through_change(env, before, after, Request(Caller("u0"), PVS, "watch", form))


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
        env.set_latency(0.5)
        t1 = {**two, "t1": {"members": {"users": ["u0"]}, "namespaces": ["ns-1"]}}
        env.apply(World(namespaces, t1))
        t2 = {**t1, "t2": {"members": {"users": ["u0"]}, "namespaces": ["ns-2"]}}
        env.apply(World(namespaces, t2))
        env.run(watch.settle(frozenset({"ns-1", "ns-2"}), within=WAIT))
    finally:
        env.set_latency(0)
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


def assert_namespaces(env: Environment, world: World, seen: dict[str, set[str]]) -> None:
    """Each user (by name) lists exactly these namespaces, by the oracle and through the proxy."""
    env.apply(world)
    for user, names in seen.items():
        req = Request(Caller(user), NAMESPACES, "list", "json")
        assert listed(env.full(world), req.caller, NAMESPACES) == names, user
        check(env, world, req)


def test_generic_field_path_added_later_reveals_its_objects(env: Environment) -> None:
    """u0's tenant t0 (ns-1) sees priority class `low` by name; then a generic rule for
    priorityclasses compares their `description` with its namespaces: `high` (description
    ns-1) must be ADDED on u0's open watch, as a list shows it. (Priority classes: their
    informer starts with class rules only, whatever ran before in this module.)"""
    classes = {
        NAMESPACES: {"ns-1": Obj()},
        PRIORITY_CLASSES: {"high": Obj(fields={"description": "ns-1"})},
    }
    t0 = {**U0_TENANT["t0"], "namespaces": ["ns-1"]}
    by_name = {**t0, "priorityClasses": {"names": ["low"]}}
    generic = {
        "group": "scheduling.k8s.io",
        "resource": PRIORITY_CLASSES,
        "fieldPath": "description",
    }
    before = World(classes, {"t0": by_name})
    after = World(classes, {"t0": {**t0, "resources": [generic]}})
    watch_through_change(
        env, before, after, Request(Caller("u0"), PRIORITY_CLASSES, "watch", "json")
    )


def test_rolebinding_subject_without_namespace_names_an_account_of_its_own(
    env: Environment,
) -> None:
    """A RoleBinding in ns-1 names ServiceAccount `robot` without a namespace: RBAC reads it
    as ns-1's robot, so that account (a member of t0) sees ns-1."""
    robot = "system:serviceaccount:ns-1:robot"
    binding = RoleBinding("ns-1", (Subject("ServiceAccount", "robot"),))
    world = World(
        {NAMESPACES: {"ns-1": Obj(), "ns-2": Obj()}},
        {"t0": {"members": {"users": [robot]}}},
        rolebindings={"ns-1/rb": binding},
    )
    assert_namespaces(env, world, {robot: {"ns-1"}})


# --- bugs the properties found, each fixed -------------------------------------------------


def test_same_named_tenants_keep_their_own_namespaces(env: Environment) -> None:
    """The config file's t0 (member u1, lists ns-5) and a Tenant CR t0 (member u0, lists ns-0,
    label value v-t0 on ns-1): each member sees its own tenant's namespaces, no others."""
    namespaces = {"ns-0": Obj(), "ns-1": Obj(labels={TENANT_LABEL: "v-t0"}), "ns-5": Obj()}
    cr = {"members": {"users": ["u0"]}, "namespaces": ["ns-0"], "namespaceLabelValue": "v-t0"}
    config = {"members": {"users": ["u1"]}, "namespaces": ["ns-5"]}
    world = World({NAMESPACES: namespaces}, tenants={"t0": cr}, config={"t0": config})
    assert_namespaces(env, world, {"u0": {"ns-0", "ns-1"}, "u1": {"ns-5"}})


def test_capsule_label_naming_no_tenant_still_wins(env: Environment) -> None:
    """Capsule mode: ns-1 carries Capsule's label for c9, a Capsule Tenant the proxy does not
    know (deleted, or refused whole: an allowedRegex Go reads and Python does not, like
    `gold\\z`), and tenant-proxy.io/tenant=t0, which c9's owner may set on its own namespace.
    Capsule's label wins: ns-1 is nobody's, and t0's member u0 must not see it (nor, with
    allServiceAccountsOfOwnNamespaces, would ns-1's ServiceAccounts join t0)."""
    labels = {CAPSULE_LABEL: "c9", TENANT_LABEL: "t0"}
    world = World({NAMESPACES: {"ns-1": Obj(labels=labels)}}, {"t0": U0_TENANT["t0"]})
    assert_namespaces(env, world, {"u0": set()})
