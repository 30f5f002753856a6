"""What a tenant's tools ask beyond list/get: access reviews, describe, create-if-missing."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import aiohttp
import pytest
from e2e_kubectl import kubectl, pod_on_node

from tenant_proxy import pki
from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import client_ssl

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

PROTOBUF = "application/vnd.kubernetes.protobuf"
REVIEWS = "/apis/authorization.k8s.io/v1"
# The review body kubectl v1.37 POSTs for `auth can-i list namespaces`, as recorded.
RECORDED = Path(__file__).resolve().parents[1] / "reference"


@pytest.mark.parametrize(
    "resource", ["namespaces", "nodes", "persistentvolumes", "storageclasses", "ingressclasses"]
)
async def test_can_i_list_filtered_resources_says_yes(alice: Path, resource: str) -> None:
    result = await kubectl(alice, "auth", "can-i", "list", resource)
    assert (result.code, result.out.strip()) == (0, "yes"), result.err


async def test_can_i_still_says_no_for_writes_and_unfiltered(alice: Path) -> None:
    for args in (("delete", "nodes"), ("update", "namespaces"), ("list", "runtimeclasses")):
        result = await kubectl(alice, "auth", "can-i", *args)
        assert result.out.strip() == "no", (args, result.out, result.err)


NAMESPACE_ROW = re.compile(
    r"^namespaces +\[\] +\[(?P<names>[^\]]*)\] +\[(?P<verbs>[^\]]*)\]$", re.MULTILINE
)


# alice owns team-a (the proxy creates namespaces named team-a-* for her, and deletes those
# labelled for team-a); dave is a team-a member who owns nothing.
@pytest.mark.parametrize(
    ("args", "alice_may"),
    [
        (("create", "namespaces"), "yes"),
        (("create", "namespace/team-a-new"), "yes"),
        (("create", "namespace/team-b-new"), "no"),
        (("create", "namespace/kube-mine"), "no"),
        (("delete", "namespace/team-a-dev"), "yes"),
        (("delete", "namespace/team-b-dev"), "no"),
        (("delete", "namespaces"), "no"),
    ],
)
async def test_can_i_says_what_namespace_self_service_does_for_an_owner(
    demo: Demo, alice: Path, args: tuple[str, str], alice_may: str
) -> None:
    mine = await kubectl(alice, "auth", "can-i", *args)
    assert mine.out.strip() == alice_may, (mine.out, mine.err)
    dave = await kubectl(demo.kubeconfig("dave", ["tenant-a-devs"]), "auth", "can-i", *args)
    assert dave.out.strip() == "no", (dave.out, dave.err)


async def test_rules_review_lists_an_owners_namespace_create_and_deletes(alice: Path) -> None:
    result = await kubectl(alice, "auth", "can-i", "--list", "-n", "team-a-dev")
    assert result.code == 0, result.err
    # Resources, Non-Resource URLs, Resource Names, Verbs: kubectl prints a row per resource
    # name and merges the verbs of rules with the same names.
    verbs: dict[str, set[str]] = {}
    for m in NAMESPACE_ROW.finditer(result.out):
        verbs.setdefault(m["names"], set()).update(m["verbs"].split())
    assert "create" in verbs[""], result.out
    assert "delete" not in verbs[""], result.out
    deleted = {names for names, v in verbs.items() if "delete" in v}
    assert deleted == {"team-a-dev", "team-a-prod"}, result.out


async def test_can_i_list_in_own_namespace_comes_from_rbac(alice: Path) -> None:
    own = await kubectl(alice, "auth", "can-i", "list", "pods", "-n", "team-a-dev")
    other = await kubectl(alice, "auth", "can-i", "list", "pods", "-n", "team-b-dev")
    assert (own.out.strip(), other.out.strip()) == ("yes", "no")


async def test_rules_review_lists_filtered_reads(alice: Path) -> None:
    result = await kubectl(alice, "auth", "can-i", "--list", "-n", "team-a-dev")
    assert result.code == 0, result.err
    rows = {line.split()[0]: line for line in result.lines[1:]}
    for resource in ("namespaces", "nodes", "persistentvolumes", "storageclasses.storage.k8s.io"):
        assert resource in rows, result.out
        assert "list" in rows[resource], result.out


async def test_whoami_names_the_caller(alice: Path, carol: Path) -> None:
    mine = await kubectl(alice, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    theirs = await kubectl(carol, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert (mine.out, theirs.out) == ("alice", "oidc:carol")


async def test_missing_namespace_is_404_not_403_for_create_if_missing_clients(alice: Path) -> None:
    result = await kubectl(alice, "get", "namespace", "brand-new-ns")
    assert "(NotFound)" in result.err


async def test_describe_own_node_works(alice: Path) -> None:
    result = await kubectl(alice, "describe", "node", "node-a1")
    assert result.code == 0, result.err
    assert "Name:               node-a1" in result.out


async def test_all_namespaces_list_is_the_union_of_own_namespaces(admin: Path, alice: Path) -> None:
    for name, ns in (("a1", "team-a-dev"), ("a2", "team-a-prod"), ("b1", "team-b-dev")):
        created = await kubectl(admin, "create", "-f", "-", stdin=pod_on_node(name, ns, "node-a1"))
        assert created.code == 0, created.err
    result = await kubectl(alice, "get", "pods", "-A", "-o", "name")
    assert result.code == 0, result.err
    assert result.names() == {"a1", "a2"}
    table = await kubectl(alice, "get", "pods", "--all-namespaces")
    assert {line.split()[1] for line in table.lines[1:]} == {"a1", "a2"}


async def test_describe_own_node_lists_own_pods_on_it(admin: Path, alice: Path) -> None:
    await kubectl(admin, "create", "-f", "-", stdin=pod_on_node("on-a1", "team-a-dev", "node-a1"))
    await kubectl(admin, "create", "-f", "-", stdin=pod_on_node("foreign", "team-b-dev", "node-a1"))
    result = await kubectl(alice, "describe", "node", "node-a1")
    assert result.code == 0, result.err
    assert "on-a1" in result.out
    assert "foreign" not in result.out


def recorded_request_body(name: str) -> bytes:
    lines = (RECORDED / f"{name}.txt").read_text().splitlines()
    marker = lines.index("> # (binary protobuf body, base64)")
    return base64.b64decode(lines[marker + 1].removeprefix("> "))


@pytest.mark.emulator_only  # reads what the emulator received
async def test_can_i_reviews_go_upstream_as_sent_and_are_read_back_in_json(
    demo: Demo, alice: Path
) -> None:
    allowed = await kubectl(alice, "auth", "can-i", "list", "namespaces")
    assert (allowed.code, allowed.out.strip()) == (0, "yes"), allowed.err
    listed = await kubectl(alice, "auth", "can-i", "--list", "-n", "team-a-dev")
    assert listed.code == 0, listed.err
    assert "namespaces" in {line.split()[0] for line in listed.lines[1:]}
    for plural in ("selfsubjectaccessreviews", "selfsubjectrulesreviews"):
        received = {
            (r.content_type, r.accept)
            for r in demo.emulator.received
            if r.path == f"{REVIEWS}/{plural}"
        }
        # kubectl's protobuf body went on as it was; the proxy asked for JSON to amend it.
        assert received == {(PROTOBUF, "application/json")}, plural


def alice_session(demo: Demo) -> aiohttp.ClientSession:
    assert demo.proxy is not None
    pair = pki.issue_client_cert(demo.client_ca, "alice", ("tenant-a-devs",))
    connector = aiohttp.TCPConnector(ssl=client_ssl(demo.client_ca.cert_pem, pair))
    return aiohttp.ClientSession(base_url=demo.proxy.tenant_url, connector=connector)


async def test_a_protobuf_review_is_answered_in_json_and_amended(demo: Demo) -> None:
    body = recorded_request_body("selfsar-protobuf-alice-list-namespaces")
    headers = {"Content-Type": PROTOBUF, "Accept": f"{PROTOBUF},application/json"}
    async with alice_session(demo) as session:
        url = f"{REVIEWS}/selfsubjectaccessreviews"
        async with session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 201
            assert resp.content_type == "application/json"
            review = await resp.json()
    assert review["kind"] == "SelfSubjectAccessReview"
    assert review["spec"]["resourceAttributes"]["resource"] == "namespaces"
    assert review["status"]["allowed"] is True


async def test_a_review_accepting_only_protobuf_is_406(demo: Demo) -> None:
    body = recorded_request_body("selfsar-protobuf-alice-list-namespaces")
    headers = {"Content-Type": PROTOBUF, "Accept": PROTOBUF}
    async with alice_session(demo) as session:
        url = f"{REVIEWS}/selfsubjectaccessreviews"
        async with session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 406
            status = await resp.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "NotAcceptable", 406)
