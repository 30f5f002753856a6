"""Writes, subresources and upgrades aimed at other tenants' objects, or at tenancy itself.

The proxy never writes with its own rights: every write goes up as alice, and the cluster's RBAC
refuses it (403, the API server's own Status). Nothing a tenant may write widens its tenancy:
relabelling a namespace or node, binding a PV, creating a Tenant. Upgrades to a foreign pod's
exec or port-forward are refused before any 101 (CVE-2018-1002105).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
import pytest
from attack_support import (
    WAIT,
    World,
    assert_nothing_foreign,
    exchange,
    host_header,
    open_tls,
    probe,
    send_raw,
)
from e2e.core_support import assert_status, read_response

pytestmark = [pytest.mark.e2e]

MERGE = "application/merge-patch+json"
JSON = "application/json"
CLAIM = b'{"metadata":{"labels":{"tenant-proxy.io/tenant":"team-a"}}}'
NAMESPACE_B = b'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-b-dev"}}'
FOREIGN_NAMESPACE = (
    b'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-b-new",'
    b'"labels":{"tenant-proxy.io/tenant":"team-b"}}}'
)
TENANT = (
    b'{"apiVersion":"tenancy.tenant-proxy.io/v1alpha1","kind":"Tenant",'
    b'"metadata":{"name":"team-a-plus"},"spec":{"members":{"users":["alice"]},'
    b'"namespaces":["team-b-dev"]}}'
)
STORAGE_CLASS = (
    b'{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":"gold-2"},'
    b'"provisioner":"x"}'
)
POD = (
    b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},'
    b'"spec":{"containers":[{"name":"c","image":"busybox"}]}}'
)
REVIEW = (
    b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",'
    b'"spec":{"token":"someone-elses"}}'
)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    target: str
    body: bytes = b""
    content_type: str = JSON
    code: int = 403
    reason: str = "Forbidden"
    fragment: str = 'User "alice" cannot'
    forwarded: bool = True  # False: namespace self-service, answered by the proxy itself


CASES = [
    Case("label a foreign namespace hers", "PATCH", "/api/v1/namespaces/team-b-dev", CLAIM, MERGE),
    Case("replace a foreign namespace", "PUT", "/api/v1/namespaces/team-b-dev", NAMESPACE_B),
    # Namespace self-service (alice owns team-a): a foreign namespace is one that does not exist.
    Case(
        "delete a foreign namespace",
        "DELETE",
        "/api/v1/namespaces/team-b-dev",
        code=404,
        reason="NotFound",
        fragment='namespaces "team-b-dev" not found',
        forwarded=False,
    ),
    Case("relabel her own namespace", "PATCH", "/api/v1/namespaces/team-a-dev", CLAIM, MERGE),
    Case(
        "create a namespace labelled for another tenant",
        "POST",
        "/api/v1/namespaces",
        FOREIGN_NAMESPACE,
        fragment="names no tenant you own",
        forwarded=False,
    ),
    Case(
        "create a namespace of a reserved name",
        "POST",
        "/api/v1/namespaces",
        b'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-mine"}}',
        fragment="reserved",
        forwarded=False,
    ),
    Case("delete every namespace", "DELETE", "/api/v1/namespaces"),
    Case(
        "finalize a foreign namespace", "PUT", "/api/v1/namespaces/team-b-dev/finalize", NAMESPACE_B
    ),
    Case(
        "status of a foreign namespace",
        "PATCH",
        "/api/v1/namespaces/team-b-dev/status",
        b'{"status":{"phase":"Terminating"}}',
        MERGE,
    ),
    Case(
        "bind a foreign PV to her namespace",
        "PATCH",
        "/api/v1/persistentvolumes/pv-b-data",
        b'{"spec":{"claimRef":{"namespace":"team-a-dev","name":"data"}}}',
        MERGE,
    ),
    Case(
        "bind the unbound PV",
        "PATCH",
        "/api/v1/persistentvolumes/pv-unbound",
        b'{"spec":{"claimRef":{"namespace":"team-a-dev","name":"x"}}}',
        MERGE,
    ),
    Case("delete a foreign PV", "DELETE", "/api/v1/persistentvolumes/pv-b-data"),
    Case(
        "status of a foreign PV",
        "PATCH",
        "/api/v1/persistentvolumes/pv-b-data/status",
        b'{"status":{"phase":"Released"}}',
        MERGE,
    ),
    Case(
        "move a foreign node to her pool",
        "PATCH",
        "/api/v1/nodes/node-b1",
        b'{"metadata":{"labels":{"pool":"team-a"}}}',
        MERGE,
    ),
    Case("delete her own node", "DELETE", "/api/v1/nodes/node-a1"),
    Case("a foreign node's kubelet", "GET", "/api/v1/nodes/node-b1/proxy/metrics"),
    Case("her own node's kubelet", "GET", "/api/v1/nodes/node-a1/proxy/configz"),
    Case("a foreign pod's proxy", "GET", "/api/v1/namespaces/team-b-dev/pods/p/proxy/"),
    Case("a foreign service's proxy", "GET", "/api/v1/namespaces/team-b-dev/services/s:80/proxy/"),
    Case("create a Tenant", "POST", "/apis/tenancy.tenant-proxy.io/v1alpha1/tenants", TENANT),
    Case(
        "widen another Tenant",
        "PATCH",
        "/apis/tenancy.tenant-proxy.io/v1alpha1/tenants/team-c",
        b'{"spec":{"members":{"users":["alice"]}}}',
        MERGE,
    ),
    Case("create a storage class", "POST", "/apis/storage.k8s.io/v1/storageclasses", STORAGE_CLASS),
    Case("a pod in a foreign namespace", "POST", "/api/v1/namespaces/team-b-dev/pods", POD),
    Case(
        "borrow the proxy's TokenReview right",
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        REVIEW,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_writes_go_up_as_alice_and_her_rbac_refuses_them(world: World, case: Case) -> None:
    mark = world.mark()
    headers = [("Accept", JSON)]
    if case.body:
        headers.append(("Content-Type", case.content_type))
    answer = await exchange(world, case.method, case.target, headers, case.body)
    assert answer.status == case.code, answer.body
    body = orjson.loads(answer.body)
    assert_status(body, case.code, case.reason)
    assert case.fragment in body["message"]
    path = case.target.partition("?")[0]
    sent = [r for r in mark.since() if r.path.partition("?")[0] == path and r.method == case.method]
    assert bool(sent) == case.forwarded
    assert all(r.values("Impersonate-User") == ["alice"] for r in sent)
    assert_nothing_foreign(answer.body, case.target + case.body.decode())
    mark.assert_upstream_clean()
    await probe(world)


async def test_self_reviews_are_no_oracle_and_grant_no_write(world: World) -> None:
    """`kubectl auth can-i`: reads the proxy serves filtered are allowed whatever the name
    (a foreign name answers as a missing one, so existence does not leak), writes are the
    cluster's to answer, and it says no."""
    questions = {
        "get foreign": {"verb": "get", "resource": "namespaces", "name": "team-b-dev"},
        "get missing": {"verb": "get", "resource": "namespaces", "name": "team-b-zzz"},
        "patch foreign": {"verb": "patch", "resource": "namespaces", "name": "team-b-dev"},
        "delete foreign pv": {
            "verb": "delete",
            "resource": "persistentvolumes",
            "name": "pv-b-data",
        },
        "impersonate": {"verb": "impersonate", "resource": "users", "name": "admin"},
    }
    mark = world.mark()
    allowed = {}
    for what, attrs in questions.items():
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        answer = await exchange(
            world,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            [("Accept", JSON), ("Content-Type", JSON)],
            orjson.dumps(review),
        )
        assert answer.status == 201, answer.body
        allowed[what] = answer.json()["status"]["allowed"]
    assert allowed == {
        "get foreign": True,
        "get missing": True,
        "patch foreign": False,
        "delete foreign pv": False,
        "impersonate": False,
    }
    mark.assert_upstream_clean()
    await probe(world)


UPGRADES = {
    "websocket exec": (
        "/api/v1/namespaces/team-b-dev/pods/p/exec?command=id&stdout=1",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
        ],
    ),
    "websocket attach": (
        "/api/v1/namespaces/team-b-dev/pods/p/attach?stdout=1",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Protocol", "v4.channel.k8s.io"),
        ],
    ),
    "spdy port-forward": (
        "/api/v1/namespaces/team-b-dev/pods/p/portforward",
        [
            ("Upgrade", "SPDY/3.1"),
            ("Connection", "Upgrade"),
            ("X-Stream-Protocol-Version", "portforward.k8s.io"),
        ],
    ),
    "spdy exec": (
        "/api/v1/namespaces/team-b-dev/pods/p/exec?command=sh&stdin=1",
        [
            ("Upgrade", "SPDY/3.1"),
            ("Connection", "Upgrade"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    ),
}


@pytest.mark.parametrize("kind", UPGRADES)
async def test_an_upgrade_into_a_foreign_pod_is_refused_before_any_101(
    world: World, kind: str
) -> None:
    target, headers = UPGRADES[kind]
    lines = [f"POST {target} HTTP/1.1", f"Host: {host_header(world)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    mark = world.mark()
    answers = await send_raw(world, ("\r\n".join(lines) + "\r\n\r\n").encode(), count=2)
    # One answer, then the connection is closed: a refused upgrade is never reused.
    assert [a.status for a in answers] == [403], answers
    assert_status(answers[0].json(), 403, "Forbidden")
    assert 'User "alice" cannot create resource "pods/' in answers[0].json()["message"]
    assert_nothing_foreign(answers[0].body, target)
    mark.assert_upstream_clean()
    await probe(world)


SECRETS = "/api/v1/namespaces/team-b-dev/secrets"
INNER = f"GET {SECRETS} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n".encode()


async def test_a_request_pipelined_after_a_refused_upgrade_never_reaches_the_api_server(
    world: World,
) -> None:
    """CVE-2018-1002105: the upgrade is refused, and the connection with it; the request
    written right behind it is never read as one, on either side of the proxy."""
    target, headers = UPGRADES["spdy exec"]
    lines = [f"POST {target} HTTP/1.1", f"Host: {host_header(world)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    mark = world.mark()
    answers = await send_raw(world, ("\r\n".join(lines) + "\r\n\r\n").encode() + INNER, count=2)
    assert [a.status for a in answers] == [403]
    assert not [p for p in mark.paths() if p.startswith(SECRETS)]
    mark.assert_upstream_clean()
    await probe(world)


async def test_bytes_after_a_granted_upgrade_never_become_a_request_upstream(
    world: World,
) -> None:
    """Once the API server switched protocols, the proxy splices bytes both ways and reads
    none of them: an HTTP request written into the tunnel is the stream's payload (the
    emulator's SPDY exec echoes its raw bytes), never a request on the proxy's own upstream
    connection."""
    head = (
        f"POST /api/v1/namespaces/team-a-dev/pods/p/exec?command=cat&stdin=true HTTP/1.1\r\n"
        f"Host: {host_header(world)}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
    ).encode()
    reader, writer = await open_tls(world)
    try:
        writer.write(head)
        switched = await asyncio.wait_for(read_response(reader), WAIT)
        assert switched.status == 101, switched
        mark = world.mark()
        writer.write(INNER)
        echoed = await asyncio.wait_for(reader.readexactly(len(INNER)), WAIT)
    finally:
        writer.close()
    assert echoed == INNER
    assert not [p for p in mark.paths() if p.startswith(SECRETS)]
    await probe(world)
