"""The request pipeline over real TLS: verbs, errors and bad input, as a client sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from tenant_proxy.emulator.app import Emulator

Session = Callable[..., aiohttp.ClientSession]
ADMIN = ("admin", ("system:masters",))


async def test_admin_lists_the_reference_namespaces(session_for_user: Session) -> None:
    async with session_for_user(*ADMIN).get("/api/v1/namespaces") as resp:
        body = await resp.json()
    assert resp.status == 200
    names = [i["metadata"]["name"] for i in body["items"]]
    assert names == sorted(names)
    assert {"team-a-dev", "team-a-prod", "team-b-dev", "default", "kube-system"} <= set(names)
    assert body["kind"] == "NamespaceList"
    assert "kind" not in body["items"][0]


async def test_create_then_get_returns_the_stored_object(session_for_user: Session) -> None:
    s = session_for_user(*ADMIN)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"k": "v"}}
    async with s.post("/api/v1/namespaces/team-a-dev/configmaps", json=cm) as resp:
        created = await resp.json()
    assert resp.status == 201
    async with s.get("/api/v1/namespaces/team-a-dev/configmaps/c1") as resp:
        got = await resp.json()
    assert got == created
    assert got["metadata"]["namespace"] == "team-a-dev"
    assert got["metadata"]["uid"]
    assert got["metadata"]["creationTimestamp"].endswith("Z")


async def test_generate_name_gets_five_random_characters(session_for_user: Session) -> None:
    cm = {"metadata": {"generateName": "gen-"}}
    async with session_for_user(*ADMIN).post(
        "/api/v1/namespaces/team-a-dev/configmaps", json=cm
    ) as resp:
        name = (await resp.json())["metadata"]["name"]
    assert resp.status == 201
    assert name.startswith("gen-")
    assert len(name) == len("gen-") + 5


@pytest.mark.parametrize(
    ("path", "details"),
    [
        ("/api/v1/namespaces/nope", {"name": "nope", "kind": "namespaces"}),
        (
            "/apis/storage.k8s.io/v1/storageclasses/nope",
            {"name": "nope", "group": "storage.k8s.io", "kind": "storageclasses"},
        ),
    ],
)
async def test_not_found_details_name_the_group_apart(
    session_for_user: Session, path: str, details: dict[str, str]
) -> None:
    async with session_for_user(*ADMIN).get(path) as resp:
        status = await resp.json()
    assert resp.status == 404
    # As kube-apiserver writes StatusDetails: name, group (if any), kind, in that order.
    assert list(status["details"].items()) == list(details.items())


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "reason"),
    [
        ("GET", "/api/v1/nopes", None, 404, "NotFound"),
        (
            "POST",
            "/api/v1/namespaces/team-b-dev",
            b'{"metadata":{"name":"x"}}',
            405,
            "MethodNotAllowed",
        ),
        ("POST", "/api/v1/namespaces/team-a-dev/configmaps", b'{"metadata": {', 400, "BadRequest"),
        (
            "POST",
            "/api/v1/namespaces/team-a-dev/configmaps",
            b"- just\n- a list\n",
            400,
            "BadRequest",
        ),
        ("PATCH", "/api/v1/namespaces/team-b-dev", b'{"metadata":{}}', 415, "UnsupportedMediaType"),
        (
            "POST",
            "/api/v1/namespaces/team-a-dev/configmaps",
            b"metadata: {name: [",
            400,
            "BadRequest",
        ),
        ("GET", "/api/v1/namespaces?labelSelector=a%20in%20(", None, 400, "BadRequest"),
        ("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", None, 400, "BadRequest"),
    ],
)
async def test_bad_requests_get_a_status_with_the_right_code(
    session_for_user: Session,
    method: str,
    path: str,
    body: bytes | None,
    code: int,
    reason: str,
) -> None:
    headers = {"Content-Type": "application/json"}
    async with session_for_user(*ADMIN).request(method, path, data=body, headers=headers) as r:
        status = await r.json()
    assert r.status == code
    assert (status["kind"], status["reason"], status["code"]) == ("Status", reason, code)


async def test_protobuf_body_of_an_unsupported_kind_is_415(session_for_user: Session) -> None:
    async with session_for_user(*ADMIN).post(
        "/apis/apps/v1/namespaces/team-a-dev/deployments",
        data=b"k8s\x00\x0a\x0e\x0a\x07apps/v1\x12\x03Foo",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    ) as r:
        status = await r.json()
    assert r.status == 415
    assert status["reason"] == "UnsupportedMediaType"


async def test_unsupported_field_selector_names_the_field(session_for_user: Session) -> None:
    async with session_for_user(*ADMIN).get("/api/v1/pods?fieldSelector=spec.bogus%3Dx") as r:
        status = await r.json()
    assert status["message"] == "field label not supported: spec.bogus"


async def test_body_over_three_mebibytes_is_refused_with_413(session_for_user: Session) -> None:
    big = b'{"metadata":{"name":"big"},"data":{"k":"' + b"x" * (3 * 1024 * 1024) + b'"}}'
    async with session_for_user(*ADMIN).post(
        "/api/v1/namespaces/team-a-dev/configmaps",
        data=big,
        headers={"Content-Type": "application/json"},
    ) as r:
        status = await r.json()
    assert r.status == 413
    assert status["reason"] == "RequestEntityTooLarge"


async def test_anonymous_caller_is_forbidden(session_for_user: Session) -> None:
    async with session_for_user(None).get("/api/v1/namespaces") as r:
        status = await r.json()
    assert r.status == 403
    assert 'User "system:anonymous" cannot list resource "namespaces"' in status["message"]


async def test_unexpected_error_answers_500_status_and_server_keeps_serving(
    emulator: Emulator, session_for_user: Session
) -> None:
    def boom(*args: object) -> dict[str, object]:
        raise RuntimeError("kaboom")

    emulator.cluster.get = boom  # type: ignore[method-assign,assignment]
    s = session_for_user(*ADMIN)
    async with s.get("/api/v1/namespaces/team-a-dev") as r:
        text = await r.text()
    assert r.status == 500
    assert "kaboom" not in text
    assert "Traceback" not in text
    async with s.get("/api/v1/namespaces") as r:
        assert r.status == 200


async def test_injected_429_carries_retry_after_then_requests_succeed(
    emulator: Emulator, session_for_user: Session
) -> None:
    emulator.fail_next(2, 429, retry_after=3)
    s = session_for_user(*ADMIN)
    for _ in range(2):
        async with s.get("/api/v1/namespaces") as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "3"
    async with s.get("/api/v1/namespaces") as r:
        assert r.status == 200


async def test_injected_503_and_500(emulator: Emulator, session_for_user: Session) -> None:
    s = session_for_user(*ADMIN)
    for code in (503, 500):
        emulator.fail_next(1, code)
        async with s.get("/version") as r:
            assert r.status == code
            assert (await r.json())["code"] == code


async def test_latency_delays_answers(emulator: Emulator, session_for_user: Session) -> None:
    emulator.set_latency(0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with session_for_user(*ADMIN).get("/api/v1/namespaces") as r:
        assert r.status == 200
    assert loop.time() - start >= 0.3


async def test_restart_keeps_state_on_the_same_port(
    emulator: Emulator, session_for_user: Session
) -> None:
    port = emulator.port
    await emulator.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "keep", "namespace": "team-a-dev"},
        }
    )
    await emulator.restart()
    assert emulator.port == port
    async with session_for_user(*ADMIN).get("/api/v1/namespaces/team-a-dev/configmaps/keep") as r:
        assert r.status == 200
