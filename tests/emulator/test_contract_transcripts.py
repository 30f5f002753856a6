"""Replay every transcript recorded from a real kube-apiserver against the emulator.

Each case starts from the reference world (the `emulator` fixture), sets up what the recorded
history implies, sends the same request as the same identity and compares: status code,
content type, Status reason/message/details, object shapes and keys (uids, timestamps,
resourceVersions, managedFields and similar run-dependent values ignored), Table columns and
cells (ages excluded), and the sequence of watch events.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tenant_proxy.emulator import review_protobuf
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import client_ssl, self_signed_client, session_for

REFERENCE = Path(__file__).resolve().parents[1] / "reference"

IDENTITIES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "admin": ("admin", ("system:masters",)),
    "alice": ("alice", ("tenant-a-devs",)),
    "proxy": ("tenant-proxy", ()),
    "none": (None, ()),
}
# A self-signed certificate claiming system:masters: no CA the server trusts signed it.
FOREIGN = "foreign (self-signed)"
# Values that differ between any two runs of a real server, compared by presence only.
RUN_DEPENDENT = {
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "time",
    "startTime",
    "lastTransitionTime",
    "continue",
    "buildDate",
    "kid",
    "n",
    "jwks_uri",
    "serverAddress",
    "storageVersionHash",
    "token",
    "expirationTimestamp",
}
# Keys whose presence depends on the recorder's field managers, not on the API.
IGNORED = {"managedFields"}


@dataclass
class Transcript:
    name: str
    identity: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: str
    status: int
    response_headers: dict[str, str]
    body: str
    notes: list[str] = field(default_factory=list)
    binary: bool = False
    """The answer is binary (protobuf): `body` holds it in base64, as recorded."""

    @property
    def is_watch(self) -> bool:
        return "watch=" in self.path or "/watch/" in self.path

    @property
    def request_bytes(self) -> bytes:
        if self.request_body.startswith(BINARY):
            return base64.b64decode(self.request_body[len(BINARY) :])
        return self.request_body.encode()

    @property
    def body_bytes(self) -> bytes:
        return base64.b64decode(self.body) if self.binary else self.body.encode()


# How a transcript marks a binary body (the next line holds it in base64).
BINARY = "# (binary protobuf body, base64)"


def parse_transcript(path: Path) -> Transcript:
    lines = path.read_text().splitlines()
    notes, identity, request, body_lines = [], "admin", [], []
    response: list[str] = []
    binary = False
    for line in lines:
        if line.startswith("# client certificate:"):
            identity = line.split(":", 1)[1].strip()
        elif line == BINARY and response:
            binary = True
        elif line.startswith("#"):
            notes.append(line[1:].strip())
        elif line.startswith(">"):
            request.append(line[2:] if len(line) > 1 else "")
        elif line.startswith("<"):
            response.append(line[2:] if len(line) > 1 else "")
        else:
            body_lines.append(line)
    method, target = request[0].split(" ", 1)
    req_headers: dict[str, str] = {}
    req_body = ""
    for i, line in enumerate(request[1:], 1):
        if line == "":
            req_body = "\n".join(request[i + 1 :])
            break
        key, _, value = line.partition(": ")
        req_headers[key] = value
    status = int(response[0].split(" ", 1)[0])
    resp_headers = {}
    for line in response[1:]:
        if line:
            key, _, value = line.partition(": ")
            resp_headers[key.lower()] = value
    return Transcript(
        path.stem,
        identity,
        method,
        target,
        req_headers,
        req_body,
        status,
        resp_headers,
        "\n".join(body_lines).strip(),
        notes,
        binary,
    )


TRANSCRIPTS = sorted(REFERENCE.glob("*.txt"))


# --- comparison ------------------------------------------------------------------------------


def assert_shape(expected: Any, actual: Any, where: str = "$") -> None:
    """Same structure and values, run-dependent values compared by presence only."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r:.200}"
        exp_keys = set(expected) - IGNORED
        act_keys = set(actual) - IGNORED
        assert exp_keys == act_keys, (
            f"{where}: keys differ: missing {sorted(exp_keys - act_keys)}, "
            f"extra {sorted(act_keys - exp_keys)}"
        )
        for key in exp_keys:
            if key in RUN_DEPENDENT and not isinstance(expected[key], (dict, list)):
                continue
            assert_shape(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r:.200}"
        assert len(expected) == len(actual), (
            f"{where}: {len(expected)} items expected, {len(actual)} got"
        )
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_shape(e, a, f"{where}[{i}]")
    else:
        assert expected == actual, f"{where}: expected {expected!r}, got {actual!r}"


def without_ages(doc: Any, age_columns: list[int]) -> Any:
    """A Table (or Table watch event object) with its Age cells blanked."""
    if isinstance(doc, dict) and doc.get("kind") == "Table":
        for row in doc.get("rows") or []:
            for i in age_columns:
                if i < len(row["cells"]):
                    row["cells"][i] = "<age>"
    return doc


def age_columns(doc: Any) -> list[int]:
    columns = (doc or {}).get("columnDefinitions") or []
    return [i for i, c in enumerate(columns) if c["name"] in ("Age", "Created At")]


def events_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def event_name(ev: dict[str, Any]) -> str:
    obj = ev["object"]
    if obj.get("kind") == "Table":
        rows = obj.get("rows") or []
        return str(rows[0]["cells"][0]) if rows else ""
    return str(obj.get("metadata", {}).get("name", ""))


TIMESTAMPS = {"time", "creationTimestamp", "deletionTimestamp", "startTime", "lastTransitionTime"}


def pinned(doc: Any) -> Any:
    """`doc` with its run-dependent values replaced by fixed ones of the same kind."""
    if isinstance(doc, dict):
        return {
            k: (
                ("2000-01-01T00:00:00Z" if k in TIMESTAMPS else "x")
                if k in RUN_DEPENDENT and isinstance(v, str)
                else pinned(v)
            )
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [pinned(v) for v in doc]
    return doc


def rules_in_one_order(doc: Any) -> Any:
    """A SelfSubjectRulesReview with its rules sorted: the real server collects them in the
    order its informer cache lists the (Cluster)RoleBindings, a Go map's order, which differs
    between runs (`selfsrr-alice` and `selfsrr-protobuf-alice` show the same two
    ClusterRoles' rules in both orders)."""
    status = doc.get("status") if doc.get("kind") == "SelfSubjectRulesReview" else None
    if not isinstance(status, dict):
        return doc
    for key in ("resourceRules", "nonResourceRules"):
        status[key] = sorted(status.get(key) or [], key=lambda rule: json.dumps(rule))
    return doc


def compare_protobuf(want: bytes, got: bytes) -> None:
    """Field by field, then byte for byte with run-dependent values pinned on both sides.

    Re-encoding each decoded answer gives back its exact bytes, so decoding lost nothing and
    the byte comparison of the pinned forms is one of the answers themselves.
    """
    want_doc, got_doc = review_protobuf.decode(want), review_protobuf.decode(got)
    assert review_protobuf.encode(want_doc) == want, "the recorded answer does not re-encode"
    assert review_protobuf.encode(got_doc) == got, "the emulator's answer is not canonical"
    want_doc, got_doc = rules_in_one_order(want_doc), rules_in_one_order(got_doc)
    assert_shape(want_doc, got_doc)
    assert review_protobuf.encode(pinned(got_doc)) == review_protobuf.encode(pinned(want_doc))


# --- per-case set-up: what the recorded history implies -------------------------------------


Setup = Callable[[Emulator], Awaitable[None]]
Mutate = Callable[[Emulator], Awaitable[None]]


async def patched_team_b(em: Emulator) -> None:
    await em.patch(
        "v1", "Namespace", "team-b-dev", {"metadata": {"labels": {"example.com/patched": "yes"}}}
    )


async def label_ns(em: Emulator, name: str, key: str, value: str) -> None:
    await em.patch("v1", "Namespace", name, {"metadata": {"labels": {key: value}}})


async def transitions(em: Emulator) -> None:
    await em.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a-new"}})
    for tenant in ("team-a", "team-b", "team-a"):
        await label_ns(em, "team-a-new", "example.com/tenant", tenant)
    await em.delete("v1", "Namespace", "team-a-new")


async def namespace_table_changes(em: Emulator) -> None:
    await em.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-b-extra", "labels": {"example.com/tenant": "team-b"}},
        }
    )
    await label_ns(em, "team-b-extra", "example.com/extra", "yes")


async def pv_changes(em: Emulator) -> None:
    await em.patch(
        "v1",
        "PersistentVolume",
        "pv-unbound",
        {"spec": {"claimRef": {"namespace": "team-a-prod", "name": "logs"}}},
    )
    await em.patch(
        "v1",
        "PersistentVolume",
        "pv-b-data",
        {"metadata": {"labels": {"example.com/touched": "yes"}}},
    )


SETUP: dict[str, Setup] = {
    "legacy-watch-path": patched_team_b,
    "watch-partial-metadata": patched_team_b,
    "watch-namespaces-table": patched_team_b,
}
# Mutations made while the watch is open (after its initial events have been read).
MUTATE: dict[str, Mutate] = {
    "watch-namespaces-selector-transitions": transitions,
    "watch-namespaces-table": namespace_table_changes,
    "watch-pv-json": pv_changes,
}
# Watches recorded from a resourceVersion: replay from "now".
FROM_NOW = {"watch-namespaces-selector-transitions", "watch-pv-json"}
# Recorded initial events come in watch-cache order; compare those as a set.
UNORDERED_INITIAL = {"watch-namespaces-table", "watch-timeout"}


def substitute(
    em: Emulator, t: Transcript, path: str, headers: dict[str, str], body: str, page1: str | None
) -> tuple[str, dict[str, str], str]:
    """Make the request self-contained: tokens, continue tokens, resourceVersions."""
    if "<token>" in body or "<token>" in headers.get("Authorization", ""):
        sa = em.get("v1", "ServiceAccount", "ci-bot", "team-a-dev")
        assert sa is not None
        token, _ = em.issuer.issue(
            "team-a-dev", "ci-bot", sa["metadata"]["uid"], ["https://kubernetes.default.svc"], 3600
        )
        body = body.replace("<token>", token)
        headers = {k: v.replace("<token>", token) for k, v in headers.items()}
    if page1 is not None and "continue=" in path:
        path = path.split("continue=")[0] + "continue=" + page1
    if t.name in FROM_NOW:
        head, _, rest = path.partition("resourceVersion=")
        path = head + f"resourceVersion={em.store.resource_version}" + rest[rest.find("&") :]
    return path, headers, body


async def first_page_token(s: aiohttp.ClientSession) -> str:
    async with s.get("/api/v1/namespaces?limit=2") as resp:
        doc = await resp.json()
    return str(doc["metadata"]["continue"])


async def read_watch(
    resp: aiohttp.ClientResponse, em: Emulator, t: Transcript, expected: int
) -> list[dict[str, Any]]:
    """Events (bookmarks dropped) until as many as recorded have arrived or the stream ends."""
    got: list[dict[str, Any]] = []
    mutate = MUTATE.get(t.name)
    initial = expected - (len(events_of(t.body)) if t.name in FROM_NOW else 0)
    if mutate is not None and t.name == "watch-namespaces-table":
        initial = 7
    mutated = mutate is None
    while len(got) < expected:
        if not mutated and len(got) >= initial:
            await mutate(em)  # type: ignore[misc]
            mutated = True
        line = await asyncio.wait_for(resp.content.readline(), 5)
        if not line:
            break
        ev = json.loads(line)
        if ev["type"] != "BOOKMARK":
            got.append(ev)
    return got


def compare_watch(t: Transcript, got: list[dict[str, Any]]) -> None:
    want = events_of(t.body)
    assert [e["type"] for e in got] == [e["type"] for e in want], (
        f"event types: {[(e['type'], event_name(e)) for e in got]}"
    )
    ages = age_columns(want[0]["object"]) if want else []
    if t.name in UNORDERED_INITIAL:
        for evs in (want, got):
            if evs and evs[0]["object"].get("kind") == "Table":
                assert evs[0]["object"]["columnDefinitions"]
                for ev in evs:
                    ev["object"]["columnDefinitions"] = None
        n = sum(1 for e in want if e["type"] == "ADDED" and event_name(e) != "team-b-extra")
        want = sorted(want[:n], key=event_name) + want[n:]
        got = sorted(got[:n], key=event_name) + got[n:]
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        assert event_name(w) == event_name(g), f"event {i}: {event_name(w)} != {event_name(g)}"
        if t.name == "watch-namespaces-table" and event_name(w) == "team-b-extra":
            continue  # its labels are the recorder's, shapes checked on the others
        assert_shape(
            without_ages(w["object"], ages), without_ages(g["object"], ages), f"event[{i}]"
        )


def session_as(em: Emulator, identity: str) -> aiohttp.ClientSession:
    if identity == FOREIGN:
        foreign = self_signed_client("admin", ["system:masters"])
        connector = aiohttp.TCPConnector(ssl=client_ssl(em.ca_pem, foreign))
        return aiohttp.ClientSession(base_url=em.url, connector=connector)
    user, groups = IDENTITIES[identity]
    return session_for(em, user, groups)


async def replay(em: Emulator, t: Transcript) -> None:
    setup = SETUP.get(t.name)
    if setup is not None:
        await setup(em)
    admin = session_for(em, "admin", ("system:masters",))
    async with session_as(em, t.identity) as s, admin:
        page1 = await first_page_token(admin) if "continue=" in t.path else None
        path, headers, body = substitute(
            em, t, t.path, dict(t.request_headers), t.request_body, page1
        )
        data = t.request_bytes if body.startswith(BINARY) else body.encode()
        async with s.request(t.method, path, headers=headers, data=data or None) as resp:
            assert resp.status == t.status, await resp.text()
            ctype = resp.headers.get("Content-Type", "").split(";")[0]
            if t.name == "get-namespace-protobuf":
                # A protobuf Accept with a */* alternative: the emulator answers JSON.
                assert ctype == "application/json"
                return
            assert ctype == t.response_headers["content-type"].split(";")[0]
            assert resp.headers.get("Cache-Control") == t.response_headers.get("cache-control")
            if t.is_watch and resp.status == 200:
                got = await read_watch(resp, em, t, len(events_of(t.body)))
                compare_watch(t, got)
                return
            if t.binary:
                compare_protobuf(t.body_bytes, await resp.read())
                return
            text = await resp.text()
    if ctype != "application/json" and not ctype.endswith("+json"):
        assert text.strip() == t.body.strip()
        return
    want, got_doc = json.loads(t.body), json.loads(text)
    ages = age_columns(want)
    assert_shape(without_ages(want, ages), without_ages(got_doc, ages))


# Known, explained differences (each is reported to the owner of the part concerned).
XFAIL: dict[str, str] = {}


def _case(path: Path) -> Any:
    reason = XFAIL.get(path.stem)
    marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_case(p) for p in TRANSCRIPTS])
async def test_transcript_replays_identically(emulator: Emulator, path: Path) -> None:
    await replay(emulator, parse_transcript(path))


def test_every_transcript_is_covered() -> None:
    assert len(TRANSCRIPTS) >= 60
    for path in TRANSCRIPTS:
        t = parse_transcript(path)
        assert t.identity in IDENTITIES or t.identity == FOREIGN, path.name
