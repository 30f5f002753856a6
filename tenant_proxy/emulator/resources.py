"""The served resources: a built-in table plus whatever CustomResourceDefinitions register."""

from __future__ import annotations

from typing import Any

from tenant_proxy.emulator.types import KubeObject, ResourceType

_CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")
_CREATE_ONLY = ("create",)


def _rt(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    verbs: tuple[str, ...] = _CRUD,
    categories: tuple[str, ...] = (),
    subresources: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        verbs=verbs,
        short_names=short,
        categories=categories,
        subresources=subresources,
    )


_POD_SUBRESOURCES = (
    "attach",
    "binding",
    "ephemeralcontainers",
    "eviction",
    "exec",
    "log",
    "portforward",
    "proxy",
    "status",
)

BUILTIN: tuple[ResourceType, ...] = (
    # core/v1
    _rt("", "v1", "bindings", "Binding", True, verbs=_CREATE_ONLY),
    _rt("", "v1", "componentstatuses", "ComponentStatus", False, ("cs",), ("get", "list")),
    _rt("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _rt("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _rt("", "v1", "events", "Event", True, ("ev",)),
    _rt("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    _rt(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        ("ns",),
        _NO_COLLECTION_DELETE,
        subresources=("finalize", "status"),
    ),
    _rt("", "v1", "nodes", "Node", False, ("no",), subresources=("proxy", "status")),
    _rt(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        ("pvc",),
        subresources=("status",),
    ),
    _rt(
        "", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), subresources=("status",)
    ),
    _rt(
        "", "v1", "pods", "Pod", True, ("po",), categories=("all",), subresources=_POD_SUBRESOURCES
    ),
    _rt("", "v1", "podtemplates", "PodTemplate", True),
    _rt("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), subresources=("status",)),
    _rt("", "v1", "secrets", "Secret", True),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), subresources=("token",)),
    _rt("", "v1", "services", "Service", True, ("svc",), _CRUD, ("all",), ("proxy", "status")),
    _rt(
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        True,
        ("rc",),
        categories=("all",),
        subresources=("scale", "status"),
    ),
    # apps/v1
    _rt("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    _rt(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        ("ds",),
        categories=("all",),
        subresources=("status",),
    ),
    _rt(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        categories=("all",),
        subresources=("scale", "status"),
    ),
    _rt(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        ("rs",),
        categories=("all",),
        subresources=("scale", "status"),
    ),
    _rt(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        True,
        ("sts",),
        categories=("all",),
        subresources=("scale", "status"),
    ),
    # the other groups a v1.24 server serves, so discovery matches discovery-apis
    _rt(
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "APIService",
        False,
        categories=("api-extensions",),
        subresources=("status",),
    ),
    *(
        _rt(
            "autoscaling",
            v,
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            True,
            ("hpa",),
            categories=("all",),
            subresources=("status",),
        )
        for v in ("v2", "v1", "v2beta1", "v2beta2")
    ),
    _rt(
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        True,
        ("cj",),
        categories=("all",),
        subresources=("status",),
    ),
    _rt("batch", "v1", "jobs", "Job", True, categories=("all",), subresources=("status",)),
    _rt(
        "batch",
        "v1beta1",
        "cronjobs",
        "CronJob",
        True,
        ("cj",),
        categories=("all",),
        subresources=("status",),
    ),
    _rt(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        False,
        ("csr",),
        subresources=("approval", "status"),
    ),
    _rt(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        subresources=("status",),
    ),
    _rt(
        "policy",
        "v1beta1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        subresources=("status",),
    ),
    _rt("policy", "v1beta1", "podsecuritypolicies", "PodSecurityPolicy", False, ("psp",)),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        categories=("api-extensions",),
    ),
    _rt(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        categories=("api-extensions",),
    ),
    *(
        _rt("discovery.k8s.io", v, "endpointslices", "EndpointSlice", True)
        for v in ("v1", "v1beta1")
    ),
    *(
        r
        for v in ("v1beta2", "v1beta1")
        for r in (
            _rt(
                "flowcontrol.apiserver.k8s.io",
                v,
                "flowschemas",
                "FlowSchema",
                False,
                subresources=("status",),
            ),
            _rt(
                "flowcontrol.apiserver.k8s.io",
                v,
                "prioritylevelconfigurations",
                "PriorityLevelConfiguration",
                False,
                subresources=("status",),
            ),
        )
    ),
    _rt("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
    _rt("storage.k8s.io", "v1", "csinodes", "CSINode", False),
    _rt(
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "VolumeAttachment",
        False,
        subresources=("status",),
    ),
    _rt("storage.k8s.io", "v1beta1", "csistoragecapacities", "CSIStorageCapacity", True),
    _rt("events.k8s.io", "v1beta1", "events", "Event", True, ("ev",)),
    _rt("node.k8s.io", "v1beta1", "runtimeclasses", "RuntimeClass", False),
    # review APIs (create only, answered by the IDENTITY reviews)
    _rt("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=_CREATE_ONLY),
    _rt(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        True,
        verbs=_CREATE_ONLY,
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=_CREATE_ONLY,
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        verbs=_CREATE_ONLY,
    ),
    _rt(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        False,
        verbs=_CREATE_ONLY,
    ),
    # the rest of the list
    _rt("coordination.k8s.io", "v1", "leases", "Lease", True),
    _rt("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    _rt("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    _rt("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
    _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _rt("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    _rt("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        subresources=("status",),
    ),
)


# Served but absent from discovery, so discovery matches the v1.24 transcripts while newer
# kubectl commands that POST without discovering (`kubectl auth whoami`) still work.
UNADVERTISED: tuple[ResourceType, ...] = (
    _rt(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        verbs=_CREATE_ONLY,
    ),
)


def crd_resource_types(crd: KubeObject) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves: one per served version."""
    spec: dict[str, Any] = crd.get("spec") or {}
    names: dict[str, Any] = spec.get("names") or {}
    kind = str(names.get("kind", ""))
    return [
        ResourceType(
            group=str(spec.get("group", "")),
            version=str(v["name"]),
            plural=str(names.get("plural", "")),
            singular=str(names.get("singular") or kind.lower()),
            kind=kind,
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=tuple(sorted((v.get("subresources") or {}).keys())),
        )
        for v in spec.get("versions") or []
        if v.get("served", True) and v.get("name")
    ]


class Registry:
    """Resource types by (group, version, plural); CRDs add and remove theirs at runtime."""

    def __init__(
        self,
        builtin: tuple[ResourceType, ...] = BUILTIN,
        unadvertised: tuple[ResourceType, ...] = UNADVERTISED,
    ) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._unadvertised = set(unadvertised)
        self._crd_types: dict[str, list[ResourceType]] = {}
        self._printer_columns: dict[ResourceType, list[dict[str, Any]]] = {}
        for rt in (*builtin, *unadvertised):
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def all(self) -> list[ResourceType]:
        """The advertised types (what discovery lists)."""
        return [rt for rt in self._types.values() if rt not in self._unadvertised]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The type an object with this apiVersion and kind belongs to (for apply and seeding)."""
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """Served versions per group, in first-registered order."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def is_custom(self, rt: ResourceType) -> bool:
        return rt in self._printer_columns

    def add_crd(self, crd: KubeObject) -> list[ResourceType]:
        """Start serving the CRD's versions (replacing those of an earlier revision)."""
        self.remove_crd(crd)
        types = crd_resource_types(crd)
        columns = {
            str(v.get("name")): list(v.get("additionalPrinterColumns") or [])
            for v in (crd.get("spec") or {}).get("versions") or []
        }
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
            self._printer_columns[rt] = columns.get(rt.version, [])
        self._crd_types[str(crd["metadata"]["name"])] = types
        return types

    def remove_crd(self, crd: KubeObject) -> None:
        for rt in self._crd_types.pop(str(crd["metadata"]["name"]), []):
            self._types.pop((rt.group, rt.version, rt.plural), None)
            self._printer_columns.pop(rt, None)

    def printer_columns(self, rt: ResourceType) -> list[dict[str, Any]] | None:
        """A custom resource's additionalPrinterColumns (None for built-in types)."""
        return self._printer_columns.get(rt)
