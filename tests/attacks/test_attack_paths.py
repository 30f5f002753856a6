"""Paths, queries and formats that try to read another tenant's cluster-scoped objects.

alice (team-a) owns namespaces team-a-dev and team-a-prod, node node-a1, PV pv-a-data, storage
class gold, ingress class nginx-a and the team-a-* priority classes. Every case asserts its
status and Status reason and that no name of anything else appears in the answer (but a name
the request itself carries, as a 404 echoes it). Ambiguous spellings are 400 and never
forwarded; look-alike names are simply other names (404); selectors, duplicates and formats
never widen what she sees. A foreign object read by name, in any format, is answered exactly as
a name that does not exist.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson
import pytest
import yaml
from attack_support import (
    ALICE,
    ALICE_NAMESPACES,
    BOB,
    WAIT,
    World,
    assert_nothing_foreign,
    exchange,
    probe,
)
from e2e.core_support import assert_status

from tenant_proxy.emulator.testing import client_ssl

pytestmark = [pytest.mark.e2e]

JSON = "application/json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
METADATA = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
YAML = "application/yaml"


NS = "/api/v1/namespaces"
NODES = "/api/v1/nodes"
NAME_KEY = "kubernetes.io%2Fmetadata.name"


@dataclass(frozen=True)
class Case:
    id: str
    target: str
    code: int
    reason: str = ""  # the Status reason of a refusal; "" for an answer
    accept: str = JSON


CASES = [
    # -- ambiguous paths: 400, never forwarded
    Case("encoded slash", "/api/v1/namespaces/team-a-dev%2F..%2Fteam-b-dev", 400, "BadRequest"),
    Case("encoded dot-dot", "/api/v1/namespaces/%2e%2e/nodes/node-b1", 400, "BadRequest"),
    Case("encoded dot-dot, upper", "/api/v1/namespaces/%2E%2E/nodes", 400, "BadRequest"),
    Case("half-encoded dot-dot", "/api/v1/namespaces/.%2e/nodes", 400, "BadRequest"),
    Case("double slash", "/api/v1//nodes/node-b1", 400, "BadRequest"),
    Case("leading double slash", "//api/v1/nodes", 400, "BadRequest"),
    Case("dot-dot", "/api/v1/namespaces/../nodes", 400, "BadRequest"),
    Case("dot-dot into a name", "/api/v1/namespaces/team-a-dev/../team-b-dev", 400, "BadRequest"),
    Case("dot segment", "/api/v1/./nodes/node-b1", 400, "BadRequest"),
    Case("encoded backslash", "/api/v1/namespaces/team-a-dev%5C..%5Cnodes", 400, "BadRequest"),
    Case("encoded NUL", "/api/v1/nodes/node-b1%00", 400, "BadRequest"),
    Case("overlong UTF-8 dots", "/api/v1/namespaces/%c0%ae%c0%ae/nodes", 400, "BadRequest"),
    Case("bad escape", "/api/v1/nodes/node-b1%zz", 400, "BadRequest"),
    # -- look-alikes are other names: 404, as for any name that does not exist
    Case("trailing dot", "/api/v1/namespaces/team-b-dev.", 404, "NotFound"),
    Case("cyrillic e", "/api/v1/namespaces/team-b-d%D0%B5v", 404, "NotFound"),
    Case("fullwidth hyphen", "/api/v1/nodes/node%EF%BC%8Db1", 404, "NotFound"),
    Case("upper case name", "/api/v1/namespaces/TEAM-B-DEV", 404, "NotFound"),
    Case("path parameter", "/api/v1/namespaces/team-b-dev;x=1", 404, "NotFound"),
    Case("encoded name", "/api/v1/persistentvolumes/pv%2Db%2Ddata", 404, "NotFound"),
    # -- queries
    Case("semicolon separator", "/api/v1/namespaces?limit=1;watch=1", 400, "BadRequest"),
    Case(
        "two label selectors",
        "/api/v1/namespaces?labelSelector=a%3Db&labelSelector=",
        400,
        "BadRequest",
    ),
    Case(
        "two field selectors",
        "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-a1&fieldSelector=",
        400,
        "BadRequest",
    ),
    Case(
        "a label selector spelled twice",
        "/api/v1/namespaces?labelSelector=x&label%53elector=",
        400,
        "BadRequest",
    ),
    Case("limit past int64", "/api/v1/nodes?limit=99999999999999999999", 400, "BadRequest"),
    Case("limit in hex", "/api/v1/nodes?limit=0x10", 400, "BadRequest"),
    Case("watch=false then watch=true", "/api/v1/namespaces?watch=false&watch=true", 200),
    Case("two resourceVersions", "/api/v1/namespaces?resourceVersion=0&resourceVersion=1", 200),
    Case(
        "field selector pinning a foreign name",
        "/api/v1/namespaces?fieldSelector=metadata.name%3Dteam-b-dev",
        200,
    ),
    Case(
        "field selector excluding her own",
        "/api/v1/namespaces?fieldSelector=metadata.name!%3Dteam-a-dev",
        200,
    ),
    Case(
        "label selector of another tenant",
        "/api/v1/namespaces?labelSelector=tenant-proxy.io%2Ftenant%3Dteam-b",
        200,
    ),
    Case(
        "label selector over two tenants",
        "/api/v1/namespaces?labelSelector=tenant-proxy.io%2Ftenant%20in%20(team-a,team-b)",
        200,
    ),
    Case(
        "negated label selector", "/api/v1/namespaces?labelSelector=!tenant-proxy.io%2Ftenant", 200
    ),
    Case(
        "node by a foreign hostname",
        "/api/v1/nodes?labelSelector=kubernetes.io%2Fhostname%3Dnode-b1",
        200,
    ),
    Case(
        "node selector of the other pool",
        "/api/v1/nodes?labelSelector=pool%20notin%20(team-a)",
        200,
    ),
    # Selectors on the very labels the proxy pushes down: merged, never widened.
    Case(
        "her namespace-name key, a foreign name",
        f"{NS}?labelSelector={NAME_KEY}%20in%20(team-b-dev)",
        200,
    ),
    Case(
        "her namespace-name key, notin",
        f"{NS}?labelSelector={NAME_KEY}%20notin%20(team-a-dev)",
        200,
    ),
    Case("her namespace-name key, exists", f"{NS}?labelSelector={NAME_KEY}", 200),
    Case("her namespace-name key, absent", f"{NS}?labelSelector=!{NAME_KEY}", 200),
    Case("her namespace-name key, ==", f"{NS}?labelSelector={NAME_KEY}%3D%3Dteam-b-dev", 200),
    Case("node pool in the other's", f"{NODES}?labelSelector=pool%20in%20(team-b)", 200),
    Case("node pool not hers", f"{NODES}?labelSelector=pool!%3Dteam-a", 200),
    Case("node without a pool", f"{NODES}?labelSelector=!pool", 200),
    Case(
        "node pool, two requirements",
        f"{NODES}?labelSelector=pool%20in%20(team-a),pool%20in%20(team-b)",
        200,
    ),
    Case("node pool, spaces around", f"{NODES}?labelSelector=%20pool%20%3D%20team-b%20", 200),
    Case("node pool greater than", f"{NODES}?labelSelector=pool%3E1", 200),
    # apimachinery reads `(a,b,)` as {a, b, ""} (labels/selector.go, parseIdentifiersList).
    Case(
        "node pool, trailing comma in a set",
        f"{NODES}?labelSelector=pool%20in%20(team-a,team-b,)",
        200,
    ),
    Case(
        "node pool, set without parentheses",
        f"{NODES}?labelSelector=pool%20in%20team-b",
        400,
        "BadRequest",
    ),
    Case(
        "node pool, an or",
        f"{NODES}?labelSelector=pool%3Dteam-a%20%7C%7C%20pool%3Dteam-b",
        400,
        "BadRequest",
    ),
    Case("node by a foreign name", f"{NODES}?fieldSelector=metadata.name%3D%3Dnode-b1", 200),
    Case(
        "node by two names",
        f"{NODES}?fieldSelector=metadata.name%3Dnode-b1%2Cmetadata.name%3Dnode-a1",
        200,
    ),
    Case(
        "PV by a foreign name",
        "/api/v1/persistentvolumes?fieldSelector=metadata.name%3Dpv-b-data",
        200,
    ),
    Case(
        "storage class by its label",
        "/apis/storage.k8s.io/v1/storageclasses?labelSelector=tier%3Dstandard",
        200,
    ),
    Case(
        "storage class by a foreign name",
        "/apis/storage.k8s.io/v1/storageclasses?fieldSelector=metadata.name%3Dsilver",
        200,
    ),
    Case("nodes with a trailing slash", f"{NODES}/", 200),
    Case("a foreign name with a trailing slash", f"{NS}/team-b-dev/", 404, "NotFound"),
    # Spellings of a filtered resource that are not it: the cluster's to answer, as alice.
    Case("resource in capitals", "/api/v1/Namespaces", 403, "Forbidden"),
    Case("group with a trailing dot", "/apis/storage.k8s.io./v1/storageclasses", 403, "Forbidden"),
    Case("group in capitals", "/apis/STORAGE.K8S.IO/v1/storageclasses", 403, "Forbidden"),
    pytest.param(Case("version in capitals", "/api/V1/nodes", 404, "NotFound")),
    pytest.param(
        Case(
            "a version not served", "/apis/storage.k8s.io/v1beta1/storageclasses", 404, "NotFound"
        ),
    ),
    # Other ways to a foreign node: its metrics, its Lease, its pods, its kubelet.
    Case(
        "metrics of a foreign node", "/apis/metrics.k8s.io/v1beta1/nodes/node-b1", 404, "NotFound"
    ),
    Case("metrics of every node", "/apis/metrics.k8s.io/v1beta1/nodes", 200),
    Case(
        "Lease of a foreign node",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-b1",
        403,
        "Forbidden",
    ),
    Case(
        "every node Lease",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        403,
        "Forbidden",
    ),
    Case("pods on a foreign node", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-b1", 200),
    Case("events of every namespace", "/api/v1/events", 200),
    Case("Tenants", "/apis/tenancy.tenant-proxy.io/v1alpha1/tenants", 403, "Forbidden"),
    Case(
        "cluster role bindings",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        403,
        "Forbidden",
    ),
    Case("whole list from the watch cache", "/api/v1/persistentvolumes?resourceVersion=0", 200),
    Case("pages of one", "/api/v1/persistentvolumes?limit=1", 200),
    Case("negative limit", "/api/v1/nodes?limit=-1", 200),
    Case("Table of namespaces", "/api/v1/namespaces", 200, accept=TABLE),
    Case(
        "Table with whole objects",
        "/api/v1/persistentvolumes?includeObject=Object",
        200,
        accept=TABLE,
    ),
    Case("Table of storage classes", "/apis/storage.k8s.io/v1/storageclasses", 200, accept=TABLE),
    Case("metadata list of nodes", "/api/v1/nodes", 200, accept=METADATA_LIST),
    Case(
        "Table first, JSON as fallback",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        200,
        accept=f"{TABLE}, {JSON}",
    ),
    Case("YAML list", "/apis/networking.k8s.io/v1/ingressclasses", 200, accept=YAML),
    Case("pods of every namespace", "/api/v1/pods", 200),
    # Not an API path: a non-resource URL, which her RBAC does not grant.
    Case("upper-case prefix", "/API/v1/namespaces/team-b-dev", 403, "Forbidden"),
]


async def alice_gets(world: World, target: str, accept: str = JSON) -> tuple[int, bytes, Any]:
    answer = await exchange(world, "GET", target, [("Accept", accept)])
    is_json = (answer.header("Content-Type") or "").startswith(JSON)
    return answer.status, answer.body, orjson.loads(answer.body) if is_json else None


def case_id(case: Any) -> str:
    return str(case.values[0].id if hasattr(case, "values") else case.id)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
async def test_paths_and_queries_never_widen_what_alice_sees(world: World, case: Case) -> None:
    mark = world.mark()
    code, raw, body = await alice_gets(world, case.target, case.accept)
    assert code == case.code, raw[:500]
    if case.reason:
        assert_status(body, case.code, case.reason)
    if case.code == 400:
        assert not [r for r in mark.since() if r.values("Impersonate-User") == ["alice"]]
    assert_nothing_foreign(raw, unquote(case.target))
    mark.assert_upstream_clean()
    await probe(world)


# --- a foreign object by name, in every format ------------------------------------------------

FOREIGN = [
    ("/api/v1/namespaces/", "team-b-dev", "team-b-zzz"),
    ("/api/v1/nodes/", "node-b1", "node-zz"),
    ("/api/v1/persistentvolumes/", "pv-b-data", "pv-z-data"),
    ("/apis/storage.k8s.io/v1/storageclasses/", "silver", "zilver"),
    ("/apis/networking.k8s.io/v1/ingressclasses/", "nginx-b", "nginx-z"),
    ("/apis/scheduling.k8s.io/v1/priorityclasses/", "team-b-high", "team-z-high"),
]
PROTOBUF = "application/vnd.kubernetes.protobuf"
FORMATS = {
    "json": JSON,
    "table": TABLE,
    "metadata": METADATA,
    "table with fallback": f"{TABLE}, {JSON}",
    "protobuf": PROTOBUF,
    "yaml": YAML,
}


@pytest.mark.parametrize("accept", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize(("base", "foreign", "missing"), FOREIGN, ids=[f[1] for f in FOREIGN])
async def test_a_foreign_object_is_exactly_a_missing_one(
    world: World, base: str, foreign: str, missing: str, accept: str
) -> None:
    mark = world.mark()
    got = await exchange(world, "GET", base + foreign, [("Accept", accept)])
    absent = await exchange(world, "GET", base + missing, [("Accept", accept)])
    assert (got.status, got.header("Content-Type")) == (
        absent.status,
        absent.header("Content-Type"),
    )
    assert got.body == absent.body.replace(missing.encode(), foreign.encode())
    # Protobuf alone: filtered reads are answered in JSON forms and YAML, 406 before any read.
    code, reason = (406, "NotAcceptable") if accept == PROTOBUF else (404, "NotFound")
    assert got.status == code, got.body
    assert_status(yaml.safe_load(got.body), code, reason)
    assert_nothing_foreign(got.body, base + foreign)
    mark.assert_upstream_clean()
    await probe(world)


# --- watches, however `watch` is spelled ------------------------------------------------------


# A watch's initial events end with a BOOKMARK saying so (KEP-3157, as kube-apiserver's
# cacher sends it): read up to it, not until a timeout.
INITIAL = "sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
INITIAL_END = b'"k8s.io/initial-events-end":"true"'


async def initial_events(world: World, target: str) -> bytes:
    """A watch's bytes up to the end of its initial events."""
    lines: list[bytes] = []
    async with world.session() as alice, alice.get(target, headers={"Accept": JSON}) as resp:
        assert resp.status == 200, await resp.read()
        async with asyncio.timeout(WAIT):
            async for line in resp.content:
                lines.append(line)
                if INITIAL_END in line:
                    break
    assert INITIAL_END in lines[-1]
    return b"".join(lines)


def events(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "query",
    [
        "watch=1",
        "watch=true",
        "watch=TRUE",
        "watch=yes",
        "watch=",
        "watch",
        "watch=0&watch=1",
    ],
)
async def test_every_spelling_of_watch_is_filtered(world: World, query: str) -> None:
    mark = world.mark()
    if query.startswith("watch=0"):
        # Go's url.Values.Get: the first value counts, as for the API server behind.
        answer = await exchange(world, "GET", f"/api/v1/namespaces?{query}", [("Accept", JSON)])
        assert answer.status == 200
        body = answer.body
        names = {item["metadata"]["name"] for item in orjson.loads(body)["items"]}
    else:
        body = await initial_events(world, f"/api/v1/namespaces?{query}&{INITIAL}")
        found = events(body)
        assert {e["type"] for e in found} <= {"ADDED", "BOOKMARK"}
        names = {e["object"]["metadata"]["name"] for e in found if e["type"] == "ADDED"}
    assert names == ALICE_NAMESPACES
    assert_nothing_foreign(body)
    mark.assert_upstream_clean()
    await probe(world)


@pytest.mark.parametrize(
    "target",
    [
        f"/api/v1/watch/namespaces/team-b-dev?{INITIAL}",
        f"/api/v1/watch/nodes?{INITIAL}",
        f"/api/v1/namespaces?watch=1&fieldSelector=metadata.name%3Dteam-b-dev&{INITIAL}",
        f"/api/v1/persistentvolumes?watch=1&resourceVersion=0&{INITIAL}",
    ],
    ids=["legacy path, foreign name", "legacy path", "pinned foreign name", "from rv 0"],
)
async def test_watches_of_foreign_objects_carry_nothing_foreign(world: World, target: str) -> None:
    mark = world.mark()
    body = await initial_events(world, target)
    assert all(e["type"] in ("ADDED", "BOOKMARK") for e in events(body))
    assert_nothing_foreign(body, target)
    mark.assert_upstream_clean()
    await probe(world)


# --- continue tokens that are not alice's ------------------------------------------------------


async def first_page(world: World, who: tuple[str, tuple[str, ...]], target: str) -> str:
    answer = await exchange(world, "GET", target, [("Accept", JSON)], who=who)
    assert answer.status == 200, answer.body
    token = answer.json()["metadata"].get("continue")
    assert token
    return str(token)


async def api_servers_token(world: World) -> str:
    """A continue token of the API server itself, read as its admin."""
    pair = world.emulator.mint_user("admin", ("system:masters",))
    connector = aiohttp.TCPConnector(ssl=client_ssl(world.emulator.ca_pem, pair))
    async with (
        aiohttp.ClientSession(connector=connector) as admin,
        admin.get(f"{world.emulator.url}/api/v1/persistentvolumes?limit=1") as resp,
    ):
        return str((await resp.json())["metadata"]["continue"])


PVS = "/api/v1/persistentvolumes?limit=1"
STORAGE_CLASSES = "/apis/storage.k8s.io/v1/storageclasses?limit=1"


async def test_continue_tokens_not_made_for_this_list_are_400(world: World) -> None:
    """PV lists are rewritten (claim namespaces), so their pages carry the proxy's sealed
    tokens, bound to the caller, the path, the selectors and the format."""
    bobs = await first_page(world, BOB, PVS)
    own = await first_page(world, ALICE, PVS)
    upstream = await api_servers_token(world)
    mark = world.mark()
    bad, gone = (400, "BadRequest"), (410, "Expired")
    attempts = [
        ("bob's", f"{PVS}&continue={bobs}", JSON, bad),
        ("bob's, in a Table", f"{PVS}&continue={bobs}", TABLE, bad),
        ("her own, in a Table", f"{PVS}&continue={own}", TABLE, bad),
        ("her own, another selector", f"{PVS}&labelSelector=x%21%3Dy&continue={own}", JSON, bad),
        ("her own, another list", f"{STORAGE_CLASSES}&continue={own}", JSON, bad),
        ("garbage", f"{PVS}&continue=AAAA", JSON, bad),
        ("padded base64", f"{PVS}&continue={own}%3D", JSON, bad),
        # Not sealed by a key the proxy holds: as a token of a key rotated away, the client
        # re-lists (continuation.py); the API server's own position is never used.
        ("the API server's", f"{PVS}&continue={upstream}", JSON, gone),
    ]
    answers = await asyncio.gather(
        *(exchange(world, "GET", target, [("Accept", accept)]) for _, target, accept, _ in attempts)
    )
    for (what, _, _, (code, reason)), answer in zip(attempts, answers, strict=True):
        assert answer.status == code, (what, answer.body)
        assert_status(answer.json(), code, reason)
        assert_nothing_foreign(answer.body)
    # The control: her own token continues her own list.
    page = await exchange(world, "GET", f"{PVS}&continue={own}", [("Accept", JSON)])
    assert page.status == 200
    assert [i["metadata"]["name"] for i in page.json()["items"]] == ["pv-a-data-2"]
    mark.assert_upstream_clean()
    await probe(world)


async def test_a_head_request_of_a_foreign_object_is_404(world: World) -> None:
    answer = await exchange(world, "HEAD", "/api/v1/namespaces/team-b-dev", [("Accept", JSON)])
    absent = await exchange(world, "HEAD", "/api/v1/namespaces/team-b-zzz", [("Accept", JSON)])
    assert (answer.status, answer.body) == (404, b"")
    assert answer.header("Content-Length") == absent.header("Content-Length")
    await probe(world)


def decoded(text: str) -> bytes:
    """A WebSocket watch message: the event's JSON line, base64 under base64.binary.k8s.io."""
    return text.encode() if text.startswith("{") else base64.b64decode(text)


@pytest.mark.parametrize(
    "query",
    ["watch=1", "watch=1&fieldSelector=metadata.name%3Dteam-b-dev", "watch=1&resourceVersion=0"],
    ids=["all", "pinned foreign name", "from rv 0"],
)
async def test_a_websocket_watch_carries_nothing_foreign(world: World, query: str) -> None:
    """As a dashboard (Headlamp) watches: one text message per event, hers only."""
    mark = world.mark()
    url = f"{world.tenant_url}/api/v1/namespaces?{query}&{INITIAL}"
    messages: list[str] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            url,
            ssl=world.tls(),
            protocols=("base64.binary.k8s.io",),
            headers={"Origin": "https://dashboard.example"},
        ) as ws,
    ):
        async with asyncio.timeout(WAIT):
            async for message in ws:
                messages.append(str(message.data))
                if INITIAL_END in decoded(messages[-1]):
                    break
    assert_nothing_foreign("".join(messages), query)
    added = set()
    for text in messages:
        event = orjson.loads(decoded(text))
        if event["type"] == "ADDED":
            added.add(event["object"]["metadata"]["name"])
    assert added == (set() if "fieldSelector" in query else ALICE_NAMESPACES)
    mark.assert_upstream_clean()
    await probe(world)
