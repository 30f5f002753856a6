"""Namespace self-service end to end: tenant owners create and delete their namespaces with plain
kubectl through the proxy; every refusal is the Status the API server would send.

alice owns team-a (names `team-a-*`), bob owns team-b. dave is a team-a member (group
tenant-a-devs) who owns nothing. Refusals are asserted on the Status body itself (aiohttp) and,
where kubectl prints it, on what kubectl shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cluster import Cluster
from e2e_kubectl import kubectl
from watching import session_as, tls_for

from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import kubectl_binary
from tenant_proxy.identity import Identity
from tenant_proxy.server import ProxyServer

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

LABEL = "tenant-proxy.io/tenant"
WAIT = 30.0


def namespace(name: str, labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **meta}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


@pytest.fixture
async def alice_http(demo: Demo) -> AsyncIterator[aiohttp.ClientSession]:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        yield session


async def post(
    session: aiohttp.ClientSession, body: dict[str, Any], query: str = ""
) -> tuple[int, dict[str, Any]]:
    path = "/api/v1/namespaces" + (f"?{query}" if query else "")
    async with session.post(path, json=body) as resp:
        answer: dict[str, Any] = await resp.json()
        return resp.status, answer


def created_by_test(cluster: Cluster, name: str) -> None:
    """Remove it at teardown, as the admin (also against a real cluster)."""
    cluster.created.append(("v1", "Namespace", name, ""))


async def admin_namespace(cluster: Cluster, name: str) -> dict[str, Any] | None:
    found = [n for n in await cluster.list("v1", "Namespace") if n["metadata"]["name"] == name]
    return found[0] if found else None


# --- creating ---------------------------------------------------------------------------------


async def test_owner_creates_a_labelled_namespace_with_kubectl_create(
    alice: Path, cluster: Cluster
) -> None:
    created_by_test(cluster, "team-a-new")
    result = await kubectl(alice, "create", "namespace", "team-a-new")
    assert result.code == 0, result.err
    assert result.out.strip() == "namespace/team-a-new created"
    stored = await admin_namespace(cluster, "team-a-new")
    assert stored is not None
    assert stored["metadata"]["labels"][LABEL] == "team-a"
    # At once in her list (the proxy answered once its index had it), and hers to use.
    listed = await kubectl(alice, "get", "namespaces", "-o", "name")
    assert "namespace/team-a-new" in listed.lines
    configmap = await kubectl(alice, "-n", "team-a-new", "create", "configmap", "c")
    assert configmap.code == 0, configmap.err


async def test_owners_get_the_owner_role_in_the_new_namespace_and_nothing_else(
    alice: Path, cluster: Cluster
) -> None:
    created_by_test(cluster, "team-a-bound")
    assert (await kubectl(alice, "create", "namespace", "team-a-bound")).code == 0
    bindings = await cluster.list("rbac.authorization.k8s.io/v1", "RoleBinding")
    mine = [b for b in bindings if b["metadata"]["namespace"] == "team-a-bound"]
    assert len(mine) == 1
    assert mine[0]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "admin",
    }
    assert [(s["kind"], s["name"]) for s in mine[0]["subjects"]] == [("User", "alice")]


async def test_owner_applies_a_namespace_manifest_twice(alice: Path, cluster: Cluster) -> None:
    created_by_test(cluster, "team-a-applied")
    manifest = json.dumps(namespace("team-a-applied", {"team": "a", LABEL: "team-a"}))
    first = await kubectl(alice, "apply", "-f", "-", stdin=manifest)
    assert first.code == 0, first.err
    assert first.out.strip() == "namespace/team-a-applied created"
    again = await kubectl(alice, "apply", "-f", "-", stdin=manifest)
    assert again.code == 0, again.err
    assert again.out.strip() == "namespace/team-a-applied unchanged"
    stored = await admin_namespace(cluster, "team-a-applied")
    assert stored is not None
    assert stored["metadata"]["labels"]["team"] == "a"


async def test_server_dry_run_answers_the_object_and_creates_nothing(
    alice: Path, cluster: Cluster
) -> None:
    result = await kubectl(
        alice, "create", "namespace", "team-a-dry", "--dry-run=server", "-o", "json"
    )
    assert result.code == 0, result.err
    answered = json.loads(result.out)
    assert answered["metadata"]["labels"][LABEL] == "team-a"
    assert await admin_namespace(cluster, "team-a-dry") is None


async def test_an_open_watch_of_the_tenant_sees_the_new_namespace(
    alice: Path, cluster: Cluster
) -> None:
    created_by_test(cluster, "team-a-watched")
    watch = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(alice),
        "--cache-dir",
        str(alice.parent / ".kube-cache-watch"),
        "get",
        "namespaces",
        "--watch",
        "-o",
        "name",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(alice.parent)},
    )
    assert watch.stdout is not None
    try:
        seen: set[str] = set()
        async with asyncio.timeout(WAIT):
            while seen != {"namespace/team-a-dev", "namespace/team-a-prod"}:
                seen.add((await watch.stdout.readline()).decode().strip())
            created = await kubectl(alice, "create", "namespace", "team-a-watched")
            assert created.code == 0, created.err
            line = (await watch.stdout.readline()).decode().strip()
        assert line == "namespace/team-a-watched"
    finally:
        watch.kill()
        await watch.wait()


async def test_every_self_service_write_is_audited_with_the_end_user_and_tenant(
    alice: Path, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    created_by_test(cluster, "team-a-audited")
    caplog.set_level(logging.INFO, logger="tenant_proxy.audit")
    assert (await kubectl(alice, "create", "namespace", "team-a-audited")).code == 0
    assert (await kubectl(alice, "delete", "namespace", "team-a-audited")).code == 0
    assert (await kubectl(alice, "create", "namespace", "team-b-audited")).code == 1
    assert (await kubectl(alice, "delete", "namespace", "team-b-dev")).code == 1
    lines = [
        getattr(r, "fields", {})
        for r in caplog.records
        if r.name == "tenant_proxy.audit" and r.getMessage() == "namespace self-service"
    ]
    fields = ("user", "tenant", "verb", "name", "code", "decision")
    assert [tuple(line[f] for f in fields) for line in lines] == [
        ("alice", "team-a", "create", "team-a-audited", 201, "self-service"),
        ("alice", "team-a", "delete", "team-a-audited", 200, "self-service"),
        ("alice", "", "create", "team-b-audited", 403, "refused"),
        ("alice", "", "delete", "team-b-dev", 404, "refused"),
    ]
    assert 'names must start with "team-a-"' in lines[2]["reason"]


# --- refusals ---------------------------------------------------------------------------------

RULE = 'tenant "team-a": names must start with "team-a-"'


@pytest.mark.parametrize(
    ("body", "code", "reason", "message"),
    [
        (
            namespace("Team-a-Upper"),
            422,
            "Invalid",
            'Namespace "Team-a-Upper" is invalid: metadata.name: Invalid value: "Team-a-Upper": '
            "a lowercase RFC 1123 label",
        ),
        (
            namespace("team-a-" + "x" * 57),
            422,
            "Invalid",
            "must be no more than 63 characters",
        ),
        (namespace(".."), 422, "Invalid", 'Namespace ".." is invalid'),
        (namespace("team-a-.."), 422, "Invalid", 'Namespace "team-a-.." is invalid'),
        (
            namespace("team-b-mine"),
            403,
            "Forbidden",
            f'namespaces "team-b-mine" is forbidden: {RULE}',
        ),
        (namespace("team-a"), 403, "Forbidden", RULE),
        (namespace("kube-evil"), 403, "Forbidden", "the name is reserved for the platform"),
        (namespace("default"), 403, "Forbidden", "the name is reserved for the platform"),
        (namespace("tenant-proxy-x"), 403, "Forbidden", "reserved for the platform"),
        (
            namespace("team-a-forged", {LABEL: "team-b"}),
            403,
            "Forbidden",
            "the label tenant-proxy.io/tenant=team-b names no tenant you own",
        ),
        (
            namespace("team-a-capsule", {"capsule.clastix.io/tenant": "team-a"}),
            403,
            "Forbidden",
            "names no tenant you own",
        ),
        (
            namespace("team-a-psa", {"pod-security.kubernetes.io/enforce": "privileged"}),
            403,
            "Forbidden",
            'the label "pod-security.kubernetes.io/enforce" is reserved for the platform',
        ),
        (
            namespace(
                "team-a-nodes",
                annotations={"scheduler.alpha.kubernetes.io/node-selector": "pool=team-b"},
            ),
            403,
            "Forbidden",
            'the annotation "scheduler.alpha.kubernetes.io/node-selector" is reserved',
        ),
        (
            namespace("team-a-dev"),
            409,
            "AlreadyExists",
            'namespaces "team-a-dev" already exists',
        ),
    ],
)
async def test_refusals_are_api_server_statuses_naming_the_rule(
    alice_http: aiohttp.ClientSession,
    cluster: Cluster,
    body: dict[str, Any],
    code: int,
    reason: str,
    message: str,
) -> None:
    answered_code, status = await post(alice_http, body)
    assert (answered_code, status["kind"], status["code"], status["reason"]) == (
        code,
        "Status",
        code,
        reason,
    )
    assert message in status["message"]
    name = body["metadata"]["name"]
    if code == 422:
        assert status["details"]["kind"] == "Namespace"
        assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name"] * len(
            status["details"]["causes"]
        )
    elif code == 403:
        assert status["details"] == {"name": name, "kind": "namespaces"}
        stored = await admin_namespace(cluster, name)  # `default` is there already
        assert stored is None or LABEL not in (stored["metadata"].get("labels") or {})


async def test_kubectl_shows_the_refusal_of_another_tenants_prefix(alice: Path) -> None:
    result = await kubectl(alice, "create", "namespace", "team-b-sneaky")
    assert result.code == 1
    assert result.err.strip() == (
        f'Error from server (Forbidden): namespaces "team-b-sneaky" is forbidden: {RULE}'
    )


async def test_member_without_the_owner_role_gets_rbac_forbidden_as_before(
    demo: Demo, cluster: Cluster
) -> None:
    dave = demo.kubeconfig("dave", ["tenant-a-devs"])
    result = await kubectl(dave, "create", "namespace", "team-a-dave")
    assert result.code == 1
    assert result.err.strip() == (
        'Error from server (Forbidden): namespaces is forbidden: User "dave" cannot create '
        'resource "namespaces" in API group "" at the cluster scope'
    )
    assert await admin_namespace(cluster, "team-a-dave") is None


async def test_admin_listener_creates_namespaces_unchanged(admin: Path, cluster: Cluster) -> None:
    created_by_test(cluster, "platform-tools")
    result = await kubectl(admin, "create", "namespace", "platform-tools")
    assert result.code == 0, result.err
    stored = await admin_namespace(cluster, "platform-tools")
    assert stored is not None
    assert LABEL not in (stored["metadata"].get("labels") or {})


# --- quota ------------------------------------------------------------------------------------


async def owner_of_new_tenant(demo: Demo, cluster: Cluster, quota: int) -> None:
    """Tenant team-q (a Tenant CR), owned by user quinn, with a namespace quota; returns once
    the proxy's index has it."""
    await cluster.create(
        {
            "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "team-q"},
            "spec": {"owners": {"users": ["quinn"]}, "namespaceOptions": {"quota": quota}},
        }
    )
    assert demo.proxy is not None
    index = demo.proxy.index
    async with asyncio.timeout(WAIT):
        while index.view_for(Identity("quinn")) is None:
            await index.wait_change(index.generation)


async def test_two_creates_at_once_never_exceed_the_quota(demo: Demo, cluster: Cluster) -> None:
    await owner_of_new_tenant(demo, cluster, quota=1)
    for name in ("team-q-one", "team-q-two"):
        created_by_test(cluster, name)
    async with session_as(demo, "quinn", []) as quinn:
        answers = await asyncio.gather(
            post(quinn, namespace("team-q-one")), post(quinn, namespace("team-q-two"))
        )
    codes = sorted(code for code, _ in answers)
    assert codes == [201, 403]
    refusal = next(status for code, status in answers if code == 403)
    assert refusal["message"].endswith('tenant "team-q" has reached its quota of 1 namespaces')
    labelled = await cluster.list("v1", "Namespace", label_selector=f"{LABEL}=team-q")
    assert len(labelled) == 1


async def test_replicas_creating_at_once_never_exceed_the_quota_together(
    demo: Demo, cluster: Cluster
) -> None:
    # Each replica (or worker) serializes its own creates and counts what its own index has
    # seen: creates sent to two of them at once each pass their own count.
    await owner_of_new_tenant(demo, cluster, quota=1)
    names = [f"team-q-r{i}" for i in range(6)]
    for name in names:
        created_by_test(cluster, name)
    assert demo.upstream is not None
    second = ProxyServer(demo.settings(demo.upstream))
    await second.start()
    try:
        async with asyncio.timeout(WAIT):
            while second.index.view_for(Identity("quinn")) is None:
                await second.index.wait_change(second.index.generation)
        connector = aiohttp.TCPConnector(ssl=tls_for(demo, "quinn", []), limit=0)
        async with (
            session_as(demo, "quinn", []) as first,
            aiohttp.ClientSession(base_url=second.tenant_url, connector=connector) as other,
        ):
            replicas = [first, other] * (len(names) // 2)
            answers = await asyncio.gather(
                *(
                    post(replica, namespace(name))
                    for replica, name in zip(replicas, names, strict=True)
                )
            )
    finally:
        await second.stop()
    created = [name for (code, _), name in zip(answers, names, strict=True) if code == 201]
    assert len(created) <= 1, answers
    for code, refusal in answers:
        if code != 201:
            assert code == 403, refusal
            assert refusal["message"].endswith(
                'tenant "team-q" has reached its quota of 1 namespaces'
            )
    labelled = await cluster.list("v1", "Namespace", label_selector=f"{LABEL}=team-q")
    held = [n["metadata"]["name"] for n in labelled if not n["metadata"].get("deletionTimestamp")]
    assert held == created


async def test_quota_counts_again_once_a_namespace_is_deleted(demo: Demo, cluster: Cluster) -> None:
    await owner_of_new_tenant(demo, cluster, quota=1)
    created_by_test(cluster, "team-q-first")
    created_by_test(cluster, "team-q-second")
    quinn_config = demo.kubeconfig("quinn", [])
    assert (await kubectl(quinn_config, "create", "namespace", "team-q-first")).code == 0
    refused = await kubectl(quinn_config, "create", "namespace", "team-q-second")
    assert "has reached its quota of 1 namespaces" in refused.err
    deleted = await kubectl(quinn_config, "delete", "namespace", "team-q-first", "--wait")
    assert deleted.code == 0, deleted.err
    again = await kubectl(quinn_config, "create", "namespace", "team-q-second")
    assert again.code == 0, again.err


# --- deleting ---------------------------------------------------------------------------------


async def test_owner_deletes_an_own_namespace(alice: Path, cluster: Cluster) -> None:
    created_by_test(cluster, "team-a-gone")
    assert (await kubectl(alice, "create", "namespace", "team-a-gone")).code == 0
    result = await kubectl(alice, "delete", "namespace", "team-a-gone")
    assert result.code == 0, result.err
    assert result.out.strip() == 'namespace "team-a-gone" deleted'
    stored = await admin_namespace(cluster, "team-a-gone")
    assert stored is None or stored["metadata"].get("deletionTimestamp") is not None


@pytest.mark.parametrize("name", ["team-b-dev", "platform", "kube-system", "team-a-missing"])
async def test_deleting_a_foreign_or_missing_namespace_is_not_found(
    alice: Path, cluster: Cluster, name: str
) -> None:
    result = await kubectl(alice, "delete", "namespace", name)
    assert result.code == 1
    assert result.err.strip() == f'Error from server (NotFound): namespaces "{name}" not found'
    if name != "team-a-missing":
        stored = await admin_namespace(cluster, name)
        assert stored is not None
        assert stored["metadata"].get("deletionTimestamp") is None


async def test_member_without_the_owner_role_cannot_delete(demo: Demo, cluster: Cluster) -> None:
    dave = demo.kubeconfig("dave", ["tenant-a-devs"])
    result = await kubectl(dave, "delete", "namespace", "team-a-dev")
    assert result.code == 1
    assert result.err.strip() == (
        'Error from server (Forbidden): namespaces "team-a-dev" is forbidden: User "dave" cannot '
        'delete resource "namespaces" in API group "" in the namespace "team-a-dev"'
    )
    assert await admin_namespace(cluster, "team-a-dev") is not None


RBAC = "rbac.authorization.k8s.io/v1"
CREATOR_ROLE = "tenant-proxy-namespace-creator"


async def creator_without(cluster: Cluster, resource: str) -> list[dict[str, Any]]:
    """Take `resource` out of the namespace creator's ClusterRole; its rules before."""
    roles = await cluster.list(RBAC, "ClusterRole")
    (role,) = [r for r in roles if r["metadata"]["name"] == CREATOR_ROLE]
    narrowed = [r for r in role["rules"] if resource not in r["resources"]]
    await cluster.patch(RBAC, "ClusterRole", CREATOR_ROLE, {"rules": narrowed})
    rules: list[dict[str, Any]] = role["rules"]
    return rules


async def test_the_namespace_is_created_as_the_namespace_creator(
    alice: Path, cluster: Cluster
) -> None:
    # Neither as alice nor as the proxy: without the creator's right the API server refuses
    # the creator, by name.
    rules = await creator_without(cluster, "namespaces")
    created_by_test(cluster, "team-a-as-creator")
    try:
        result = await kubectl(alice, "create", "namespace", "team-a-as-creator")
    finally:
        await cluster.patch(RBAC, "ClusterRole", CREATOR_ROLE, {"rules": rules})
    assert result.err.strip() == (
        "Error from server (Forbidden): namespaces is forbidden: User "
        '"system:serviceaccount:tenant-proxy:namespace-creator" cannot create resource '
        '"namespaces" in API group "" at the cluster scope'
    )
    assert await admin_namespace(cluster, "team-a-as-creator") is None


async def test_a_refused_owner_rolebinding_removes_the_namespace_again(
    alice: Path, cluster: Cluster
) -> None:
    # The namespace creator loses `create rolebindings`: a namespace its owners could not use
    # must not stay behind.
    rules = await creator_without(cluster, "rolebindings")
    created_by_test(cluster, "team-a-unbound")
    try:
        result = await kubectl(alice, "create", "namespace", "team-a-unbound")
    finally:
        await cluster.patch(RBAC, "ClusterRole", CREATOR_ROLE, {"rules": rules})
    assert result.code == 1
    assert result.err.startswith(
        "Error from server (InternalError): Internal error occurred: the RoleBinding of the "
        "owners of namespace 'team-a-unbound' was refused (403: "
    )
    assert result.err.rstrip().endswith("the namespace was removed again")
    stored = await admin_namespace(cluster, "team-a-unbound")
    assert stored is None or stored["metadata"].get("deletionTimestamp") is not None


# --- Capsule ----------------------------------------------------------------------------------

CAPSULE_LABEL = "capsule.clastix.io/tenant"


def capsule_objects() -> list[dict[str, Any]]:
    """Capsule's Tenant CRD (as the differential world declares it) and Tenant `oil`, owned by
    olga, with Capsule's namespace quota of 1."""
    fixtures = Path(__file__).with_name("differential-world.yaml")
    (crd,) = [
        d
        for d in yaml.safe_load_all(fixtures.read_text())
        if d and d["metadata"]["name"] == "tenants.capsule.clastix.io"
    ]
    tenant = {
        "apiVersion": "capsule.clastix.io/v1beta2",
        "kind": "Tenant",
        "metadata": {"name": "oil"},
        "spec": {"owners": [{"kind": "User", "name": "olga"}], "namespaceOptions": {"quota": 1}},
    }
    return [crd, tenant]


class CapsuleDemo(Demo):
    """The demo in Capsule mode, with Capsule's CRD and one Capsule Tenant in the world."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.emulator = Emulator(seed_objects=[*demo_world(), *capsule_objects()])

    def settings(self, upstream: Path) -> Settings:
        settings = super().settings(upstream)
        tenancy = settings.tenancy.model_copy(update={"capsule": True})
        return settings.model_copy(update={"tenancy": tenancy})


@pytest.mark.emulator_only
async def test_a_capsule_owner_creates_within_capsules_quota_under_capsules_label(
    tmp_path: Path,
) -> None:
    demo = CapsuleDemo(tmp_path)
    await demo.start()
    try:
        olga = demo.kubeconfig("olga", [])
        created = await kubectl(olga, "create", "namespace", "oil-dev")
        assert created.code == 0, created.err
        stored = demo.emulator.cluster.store.get_object("", "namespaces", "", "oil-dev")
        assert stored is not None
        assert stored["metadata"]["labels"][CAPSULE_LABEL] == "oil"
        assert LABEL not in stored["metadata"]["labels"]
        listed = await kubectl(olga, "get", "namespaces", "-o", "name")
        assert listed.lines == ["namespace/oil-dev"]
        over = await kubectl(olga, "create", "namespace", "oil-prod")
        assert over.err.strip() == (
            'Error from server (Forbidden): namespaces "oil-prod" is forbidden: '
            'tenant "oil" has reached its quota of 1 namespaces'
        )
        # alice may not hand a namespace to the Capsule tenant, whose label would win.
        alice = demo.dir / "alice.kubeconfig"
        forged = json.dumps(namespace("team-a-oil", {CAPSULE_LABEL: "oil"}))
        refused = await kubectl(alice, "create", "-f", "-", stdin=forged)
        assert "the label capsule.clastix.io/tenant=oil names no tenant you own" in refused.err
    finally:
        await demo.stop()
