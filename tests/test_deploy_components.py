"""deploy/components/: each renders over the base, applies with a server-side dry run, agrees
with the base, and grants exactly what the proxy reads with it on.

An overlay per component (and one with all of them) is rendered with the real `kubectl
kustomize`, as a user's overlay would list them under `components:`. The dry runs go through the
real kubectl against the emulator, with the third-party CRDs a cluster would have installed
(prometheus-operator's, cert-manager's; reduced to the names: the emulator, like kube-apiserver
before admission webhooks, checks the kind is served, not the fields). Fields are checked
offline: built-in kinds with kubernetes-validate's strict schemas (the flowcontrol kinds with
1.25's, the oldest it has, as v1beta2 is what v1.24 serves), the custom resources field by field
against what the base deploys.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tenant_proxy.config import Settings
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import kubectl_async, kubectl_binary
from tenant_proxy.emulator.types import Attributes, UserInfo
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPONENTS = ("servicemonitor", "cert-manager", "flowschema", "capsule", "rolebinding-namespaces")
NAMESPACE = "tenant-proxy"
PROXY = "tenant-proxy"  # the ServiceAccount the pods run as
FLOWCONTROL = "flowcontrol.apiserver.k8s.io/v1beta2"
# kubernetes-validate's oldest schemas; v1beta2 flowcontrol is unchanged from 1.24 there.
FLOWCONTROL_SCHEMAS = "1.25"
BUILTIN_SCHEMAS = "1.30"

Obj = dict[str, Any]


# --- rendering ----------------------------------------------------------------------------------


def render(directory: Path) -> list[Obj]:
    out = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def overlay(directory: Path, components: Iterable[str]) -> Path:
    """A user's overlay: the base plus `components` (kustomize wants relative paths)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(DEPLOY, directory)
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "components": [f"{base}/components/{c}" for c in components],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    return directory


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render(DEPLOY)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """The base with each component alone, and with all of them ("all")."""
    root = tmp_path_factory.mktemp("overlays")
    out = {c: render(overlay(root / c, [c])) for c in COMPONENTS}
    out["all"] = render(overlay(root / "all", COMPONENTS))
    return out


def key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def added(objs: list[Obj], base: list[Obj]) -> list[Obj]:
    before = {key(o) for o in base}
    return [o for o in objs if key(o) not in before]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(objs: list[Obj]) -> Obj:
    (c,) = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    found: Obj = c
    return found


def settings_of(objs: list[Obj]) -> Settings:
    """The settings the pod runs with: the ConfigMap's file plus the container's environment."""
    env = {e["name"]: e["value"] for e in container(objs).get("env", []) if "value" in e}
    doc = yaml.safe_load(one(objs, "ConfigMap")["data"]["config.yaml"])
    return parse_settings(doc, environ=env)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(objs: list[Obj]) -> dict[str, str]:
    labels: dict[str, str] = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


# --- what each component adds -------------------------------------------------------------------

ADDED_KINDS = {
    "servicemonitor": ["Service", "ServiceMonitor"],
    "cert-manager": ["Certificate", "Certificate", "Issuer", "Issuer"],
    "flowschema": ["FlowSchema", "PriorityLevelConfiguration"],
    "capsule": ["ClusterRole", "ClusterRoleBinding"],
    "rolebinding-namespaces": ["ClusterRole", "ClusterRoleBinding"],
}
PATCHES_DEPLOYMENT = {"cert-manager", "capsule", "rolebinding-namespaces"}


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_renders_over_the_base_and_adds_only_its_objects(
    base: list[Obj], rendered: dict[str, list[Obj]], component: str
) -> None:
    objs = rendered[component]
    assert sorted(o["kind"] for o in added(objs, base)) == sorted(ADDED_KINDS[component])
    unchanged = {key(o): o for o in base if o["kind"] != "Deployment"}
    for obj in objs:
        if key(obj) in unchanged:
            assert obj == unchanged[key(obj)], key(obj)
    deployment_changed = one(objs, "Deployment") != one(base, "Deployment")
    assert deployment_changed == (component in PATCHES_DEPLOYMENT)


def test_all_components_render_together(base: list[Obj], rendered: dict[str, list[Obj]]) -> None:
    everything = rendered["all"]
    assert sorted(o["kind"] for o in added(everything, base)) == sorted(
        k for kinds in ADDED_KINDS.values() for k in kinds
    )
    settings = settings_of(everything)
    assert settings.tenancy.capsule is True
    assert settings.tenancy.rolebinding_namespaces is True


def test_component_objects_are_namespaced_like_the_base_and_labelled(
    base: list[Obj], rendered: dict[str, list[Obj]]
) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "FlowSchema",
        "PriorityLevelConfiguration",
    }
    for obj in added(rendered["all"], base):
        expected = None if obj["kind"] in cluster_scoped else NAMESPACE
        assert obj["metadata"].get("namespace") == expected, key(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tenant-proxy"


def test_every_built_in_component_object_is_valid_in_strict_mode(
    base: list[Obj], rendered: dict[str, list[Obj]]
) -> None:
    custom = {"monitoring.coreos.com/v1", "cert-manager.io/v1"}
    errors = []
    for obj in rendered["all"]:
        if obj["apiVersion"] in custom:
            continue
        schemas = FLOWCONTROL_SCHEMAS if obj["apiVersion"] == FLOWCONTROL else BUILTIN_SCHEMAS
        try:
            kubernetes_validate.validate(obj, schemas, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert errors == []


def test_strict_flowcontrol_validation_rejects_a_field_of_a_later_version(
    rendered: dict[str, list[Obj]],
) -> None:
    # Guards the test above for the v1beta2 kinds: v1's name for the shares is not v1beta2's.
    level = one(rendered["flowschema"], "PriorityLevelConfiguration")
    limited = dict(level["spec"]["limited"])
    limited["nominalConcurrencyShares"] = limited.pop("assuredConcurrencyShares")
    broken = {**level, "spec": {**level["spec"], "limited": limited}}
    with pytest.raises(kubernetes_validate.ValidationError, match="nominalConcurrencyShares"):
        kubernetes_validate.validate(broken, FLOWCONTROL_SCHEMAS, strict=True)


# --- servicemonitor -----------------------------------------------------------------------------


def test_servicemonitor_scrapes_the_metrics_listener_of_every_pod(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["servicemonitor"]
    service = one(objs, "Service", "tenant-proxy-metrics")
    monitor = one(objs, "ServiceMonitor")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    # The tenant Service must not be scraped as well (it would double every series).
    tenant_service = one(objs, "Service", "tenant-proxy")
    assert not matches(
        monitor["spec"]["selector"]["matchLabels"], tenant_service["metadata"]["labels"]
    )
    assert matches(service["spec"]["selector"], pod_labels(objs))
    assert service["spec"]["clusterIP"] == "None"
    (port,) = service["spec"]["ports"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"  # the metrics listener has no TLS
    container_ports = {p["name"]: p["containerPort"] for p in container(objs)["ports"]}
    metrics = settings_of(objs).observability.metrics
    assert metrics is not None
    assert container_ports[port["targetPort"]] == metrics.port


# --- cert-manager -------------------------------------------------------------------------------


def test_cert_manager_certificate_lands_where_the_config_reads_tls(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["cert-manager"]
    serving = one(objs, "Certificate", "tenant-proxy-serving")
    volumes = {v["name"]: v for v in one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    tls = settings_of(objs).tls
    assert tls.client_ca_file is not None
    (volume,) = [
        v
        for n, v in volumes.items()
        if mounts.get(n, {}).get("mountPath") == "/etc/tenant-proxy-tls"
    ]
    assert "secret" not in volume, "the patch must replace the base's Secret, not add to it"
    files = {}
    for source in volume["projected"]["sources"]:
        ((kind, ref),) = source.items()
        for item in ref["items"]:
            files[item["path"]] = (kind, ref["name"], item["key"])
    mount = PurePosixPath(mounts[volume["name"]]["mountPath"])
    assert mounts[volume["name"]]["readOnly"] is True
    assert "subPath" not in mounts[volume["name"]]  # a subPath mount never sees a renewal
    by_path = {str(mount / p): f for p, f in files.items()}
    assert by_path[str(tls.cert_file)] == ("secret", serving["spec"]["secretName"], "tls.crt")
    assert by_path[str(tls.key_file)] == ("secret", serving["spec"]["secretName"], "tls.key")
    # Client certificates are checked against a CA of the operator's, never the serving CA.
    assert by_path[str(tls.client_ca_file)] == ("configMap", "tenant-proxy-client-ca", "ca.crt")


def test_cert_manager_certificate_names_the_service_and_the_admin_listener(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["cert-manager"]
    spec = one(objs, "Certificate", "tenant-proxy-serving")["spec"]
    service = one(objs, "Service", "tenant-proxy")["metadata"]
    svc = f"{service['name']}.{service['namespace']}.svc"
    assert {svc, f"{svc}.cluster.local", service["name"]} <= set(spec["dnsNames"])
    admin = settings_of(objs).admin.listener
    assert admin.host in spec.get("ipAddresses", []) or admin.host in spec["dnsNames"]
    assert "server auth" in spec["usages"]
    assert "client auth" not in spec["usages"]


def test_cert_manager_issuer_chain_is_complete_and_local(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cert-manager"]
    issuers = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Issuer"}
    certificates = {o["spec"]["secretName"]: o for o in objs if o["kind"] == "Certificate"}
    serving = one(objs, "Certificate", "tenant-proxy-serving")["spec"]["issuerRef"]
    assert serving["kind"] == "Issuer"  # namespaced: only this namespace's writers can issue
    ca_issuer = issuers[serving["name"]]["spec"]["ca"]
    ca = certificates[ca_issuer["secretName"]]["spec"]
    assert ca["isCA"] is True
    assert "selfSigned" in issuers[ca["issuerRef"]["name"]]["spec"]


# --- flowschema ---------------------------------------------------------------------------------


def test_flowschema_puts_the_proxys_serviceaccount_in_its_own_limited_level(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["flowschema"]
    schema, level = one(objs, "FlowSchema"), one(objs, "PriorityLevelConfiguration")
    assert schema["apiVersion"] == level["apiVersion"] == FLOWCONTROL
    assert schema["spec"]["priorityLevelConfiguration"]["name"] == level["metadata"]["name"]
    assert level["spec"]["type"] == "Limited"  # never Exempt
    # After the system schemas (kube-system-service-accounts is 900), before the catch-alls
    # for service accounts (9000) and everyone (9900).
    assert 900 < schema["spec"]["matchingPrecedence"] < 9000
    account = one(objs, "ServiceAccount", PROXY)["metadata"]
    (rule,) = schema["spec"]["rules"]
    assert rule["subjects"] == [
        {
            "kind": "ServiceAccount",
            "serviceAccount": {"namespace": account["namespace"], "name": account["name"]},
        }
    ]
    (resources,) = rule["resourceRules"]
    assert resources["clusterScope"] is True
    assert resources["namespaces"] == ["*"]
    assert rule["nonResourceRules"] == [{"verbs": ["*"], "nonResourceURLs": ["*"]}]


# --- server-side dry run against the emulator ---------------------------------------------------


def crd(group: str, kind: str, scope: str = "Namespaced", version: str = "v1") -> Obj:
    """A third-party CRD, reduced to its names (the emulator does not check custom fields)."""
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


PROMETHEUS_OPERATOR = [crd("monitoring.coreos.com", "ServiceMonitor")]
CERT_MANAGER = [crd("cert-manager.io", "Certificate"), crd("cert-manager.io", "Issuer")]
CAPSULE = [crd("capsule.clastix.io", "Tenant", "Cluster", "v1beta2")]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Emulator, Path]]:
    """A v1.24-like API server with prometheus-operator and cert-manager installed, and the
    proxy's namespace (a namespaced object's dry run needs it, as on kube-apiserver)."""
    seed = [*PROMETHEUS_OPERATOR, *CERT_MANAGER]
    seed.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    emulator = Emulator(seed_objects=seed)
    await emulator.start()
    try:
        admin = emulator.write_kubeconfig(
            tmp_path / "admin.kubeconfig", "admin", ["system:masters"]
        )
        yield emulator, admin
    finally:
        await emulator.stop()


def manifest(tmp_path: Path, objs: list[Obj], name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    return path


def stored(emulator: Emulator, obj: Obj) -> Obj | None:
    meta = obj["metadata"]
    return emulator.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace", ""))


@pytest.mark.kubectl
@pytest.mark.parametrize("variant", ["base", *COMPONENTS, "all"])
async def test_rendered_objects_apply_with_a_server_side_dry_run(
    cluster: tuple[Emulator, Path],
    base: list[Obj],
    rendered: dict[str, list[Obj]],
    tmp_path: Path,
    variant: str,
) -> None:
    emulator, admin = cluster
    objs = base if variant == "base" else rendered[variant]
    result = await kubectl_async(
        admin, "apply", "--dry-run=server", "-f", str(manifest(tmp_path, objs, variant))
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(objs)
    assert all(line.endswith("(server dry run)") for line in lines), lines
    # A dry run stores nothing (the proxy's namespace was there before).
    assert [key(o) for o in objs if o["kind"] != "Namespace" and stored(emulator, o)] == []


@pytest.mark.kubectl
async def test_the_dry_run_refuses_a_kind_the_cluster_does_not_serve(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    # Guards the test above: without prometheus-operator's CRD, a ServiceMonitor is refused.
    async with Emulator() as emulator:
        admin = emulator.write_kubeconfig(
            tmp_path / "admin.kubeconfig", "admin", ["system:masters"]
        )
        monitor = one(rendered["servicemonitor"], "ServiceMonitor")
        path = manifest(tmp_path, [monitor], "monitor")
        # --validate=false: for a kind /openapi/v3 lacks, kubectl falls back to /openapi/v2 in
        # protobuf, which the emulator serves only as JSON; the refusal checked is the mapping's.
        result = await kubectl_async(
            admin, "apply", "--dry-run=server", "--validate=false", "-f", str(path)
        )
    assert result.returncode != 0
    assert 'no matches for kind "ServiceMonitor"' in result.stderr


# --- RBAC: what the proxy reads with each source on ---------------------------------------------

Grant = tuple[str, str, str]  # (api group, resource, verb)


@dataclass(frozen=True)
class Decision:
    user: str
    grant: Grant
    allowed: bool


class RecordingEmulator(Emulator):
    """The emulator, noting every authorization decision it makes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decisions: list[Decision] = []

    def _authorize(self, user: UserInfo, attrs: Attributes) -> bool:
        allowed = super()._authorize(user, attrs)
        if attrs.resource_request:
            grant = (attrs.api_group, attrs.resource, attrs.verb)
            self.decisions.append(Decision(user.name, grant, allowed))
        return allowed


def grants(role: Obj) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def base_grants(base: list[Obj]) -> set[Grant]:
    """What the base's ClusterRoles grant, together."""
    return {g for o in base if o["kind"] == "ClusterRole" for g in grants(o)}


def rbac_objects(objs: list[Obj]) -> list[Obj]:
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    return [o for o in objs if o["kind"] in kinds]


async def reads_of_the_index(objs: list[Obj], directory: Path) -> list[Decision]:
    """Start the tenancy index with the settings `objs` deploy, as their ServiceAccount bound
    to their roles (nothing else), and return the decisions on its requests once it synced."""
    account = one(objs, "ServiceAccount", PROXY)["metadata"]
    user = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    seed = [*CAPSULE, one(objs, "Namespace"), one(objs, "CustomResourceDefinition")]
    emulator = RecordingEmulator(seed_objects=seed + rbac_objects(objs))
    await emulator.start()
    try:
        admin = emulator.write_kubeconfig(
            directory / "admin.kubeconfig", "admin", ["system:masters"]
        )
        token = await kubectl_async(
            admin, "create", "token", account["name"], "-n", account["namespace"]
        )
        assert token.returncode == 0, token.stderr
        kubeconfig = write_kubeconfig(
            directory / "proxy.kubeconfig",
            build_kubeconfig(
                emulator.url, emulator.ca_pem, user="proxy", token=token.stdout.strip()
            ),
        )
        upstream = Upstream(
            parse_settings(
                {
                    "tls": {"cert_file": "x", "key_file": "x"},
                    "upstream": {"kubeconfig": kubeconfig},
                },
                environ={},
            ).upstream
        )
        index = TenancyIndex(settings_of(objs).tenancy, upstream, Metrics())
        await index.start()
        try:
            synced = await index.wait_synced(20)
        finally:
            await index.stop()
            await upstream.close()
    finally:
        await emulator.stop()
    mine = [d for d in emulator.decisions if d.user == user]
    assert synced, [d for d in mine if not d.allowed]
    return mine


SOURCE_COMPONENTS = ("capsule", "rolebinding-namespaces")


@pytest.fixture(scope="module")
def index_reads(
    base: list[Obj], rendered: dict[str, list[Obj]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[Decision]]:
    """What the index asked for, per variant (a loop of its own: the fixture is shared)."""
    out = {}
    for variant in ("base", *SOURCE_COMPONENTS):
        objs = base if variant == "base" else rendered[variant]
        out[variant] = asyncio.run(reads_of_the_index(objs, tmp_path_factory.mktemp(variant)))
    return out


def component_role(objs: list[Obj], base: list[Obj]) -> Obj:
    (role,) = [o for o in added(objs, base) if o["kind"] == "ClusterRole"]
    return role


def test_the_base_grants_every_read_of_the_base_config(
    index_reads: dict[str, list[Decision]],
) -> None:
    reads = index_reads["base"]
    assert reads, "the index made no request: the recording sees nothing"
    assert [d for d in reads if not d.allowed] == []


def test_the_base_grants_no_optional_source(base: list[Obj]) -> None:
    # Reading them is what a source needs (the namespace creator's role may create bindings).
    reads = {g for g in base_grants(base) if g[-1] in ("get", "list", "watch")}
    assert not any(g[:2] == ("capsule.clastix.io", "tenants") for g in reads)
    assert not any(g[:2] == ("rbac.authorization.k8s.io", "rolebindings") for g in reads)
    settings = settings_of(base).tenancy
    assert settings.capsule is False
    assert settings.rolebinding_namespaces is False


@pytest.mark.parametrize("component", SOURCE_COMPONENTS)
def test_a_source_component_grants_exactly_what_the_index_reads_with_it_on(
    base: list[Obj],
    rendered: dict[str, list[Obj]],
    index_reads: dict[str, list[Decision]],
    component: str,
) -> None:
    reads = index_reads[component]
    assert [d for d in reads if not d.allowed] == []
    role = grants(component_role(rendered[component], base))
    assert {d.grant for d in reads} - base_grants(base) == role
    # ...and the base config alone never asks for it.
    assert not role & {d.grant for d in index_reads["base"]}


@pytest.mark.parametrize("component", SOURCE_COMPONENTS)
def test_a_source_component_binds_its_role_to_the_proxys_serviceaccount(
    base: list[Obj], rendered: dict[str, list[Obj]], component: str
) -> None:
    objs = rendered[component]
    role = component_role(objs, base)
    (binding,) = [
        o
        for o in objs
        if o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["roleRef"]["kind"] == "ClusterRole"
    account = one(objs, "ServiceAccount", PROXY)["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


@pytest.mark.parametrize("component", SOURCE_COMPONENTS)
def test_a_source_components_role_equals_the_demo_worlds_copy(
    base: list[Obj], rendered: dict[str, list[Obj]], component: str
) -> None:
    # The end-to-end tests switch these sources on with the demo world's copies bound to the
    # proxy: passing them proves the component is enough only while the two are the same.
    text = resources.files("tenant_proxy").joinpath("data/demo-world.yaml").read_text()
    role = component_role(rendered[component], base)
    (copy,) = [
        d
        for d in yaml.safe_load_all(text)
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == role["metadata"]["name"]
    ]
    assert copy["rules"] == role["rules"]
