"""Namespace self-service: may this owner create (or delete) this namespace, and as what. Pure.

A tenant's owner creates a namespace through the proxy; the proxy checks the request here and
creates it with an identity of its own. Every refusal is a Status the API server could have
given: 422 Invalid for a malformed name (as kube-apiserver's validation words it), 403 Forbidden
in the shape of an admission denial (`namespaces "x" is forbidden: <which rule>`) for the
tenancy rules, 404 for a namespace that is not the caller's to delete.

Labels: the tenant's label is added when absent; a tenancy label naming any other tenant is
refused, not overwritten. An overwrite would create something other than what was asked (and
`kubectl apply` would keep trying to set its label back); a refusal says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenant_proxy import status
from tenant_proxy.tenancy.model import Caller, NamespaceOptions, Tenant, is_owner

# kube-apiserver's own names, and the proxy's: never a tenant's.
RESERVED_NAMES = frozenset({"default"})
RESERVED_PREFIXES = ("kube-", "tenant-proxy", "openshift")
# Label and annotation domains with meaning to the cluster (pod-security.kubernetes.io/enforce,
# scheduler.alpha.kubernetes.io/node-selector, ...): a tenant may not set keys under them.
RESERVED_DOMAINS = ("kubernetes.io", "k8s.io")
# ... except these, which kubectl and the API server set themselves.
ALLOWED_SYSTEM_KEYS = frozenset(
    {"kubectl.kubernetes.io/last-applied-configuration", "kubernetes.io/metadata.name"}
)
OWNERS_ROLEBINDING = "tenant-owners"
# The fields of a Namespace and of its ObjectMeta, as their JSON names (exact case).
_NAMESPACE_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_META_FIELDS = frozenset(
    {
        *("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion"),
        *("generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"),
        *("labels", "annotations", "ownerReferences", "finalizers", "managedFields"),
    }
)

# apimachinery's IsDNS1123Label, and its message verbatim (validation.go).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_MAX_LABEL = 63


@dataclass(frozen=True)
class Creation:
    """What to create: the namespace as sent, with the tenant's label, for `tenant`."""

    tenant: Tenant
    namespace: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.namespace["metadata"]["name"])


def owned_tenants(caller: Caller, tenants: Sequence[Tenant]) -> list[Tenant]:
    """The tenants whose namespaces `caller` may create and delete."""
    return [t for t in tenants if t.namespace_options is not None and is_owner(caller, t)]


def options_of(tenant: Tenant) -> NamespaceOptions:
    if tenant.namespace_options is None:
        raise ValueError(f"tenant {tenant.name!r} has no namespace options")
    return tenant.namespace_options


# --- the name ---------------------------------------------------------------------------------


def name_invalid(name: str) -> status.ApiError | None:
    """422 as kube-apiserver answers a namespace name that is not an RFC 1123 label."""
    problems = [] if _DNS1123_LABEL.fullmatch(name) else [_LABEL_MESSAGE]
    if len(name) > _MAX_LABEL:
        problems.append(f"must be no more than {_MAX_LABEL} characters")
    if not problems:
        return None
    causes = [
        {
            "reason": "FieldValueInvalid",
            "message": f'Invalid value: "{name}": {problem}',
            "field": "metadata.name",
        }
        for problem in problems
    ]
    return invalid(name, causes)


def invalid(name: str, causes: list[dict[str, str]]) -> status.ApiError:
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    return status.ApiError(
        422,
        "Invalid",
        f'Namespace "{name}" is invalid: {summary}',
        {"name": name, "kind": "Namespace", "causes": causes},
    )


def refused(name: str, why: str) -> status.ApiError:
    """An admission-style 403: `namespaces "x" is forbidden: <why>`."""
    return status.forbidden(f'namespaces "{name}" is forbidden: {why}', "namespaces", name)


def reserved(name: str) -> bool:
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


def name_rule(tenant: Tenant) -> str:
    """The tenant's name rule in words, for refusals."""
    options = options_of(tenant)
    if options.regex:
        return f"match the regular expression {options.regex!r}"
    return f'start with "{options.prefix or tenant.name + "-"}"'


def name_allowed(tenant: Tenant, name: str) -> bool:
    """The tenant's rule: its regex matched against the whole name, else its prefix (by
    default `<tenant>-`), followed by at least one character."""
    options = options_of(tenant)
    if options.regex:
        return re.fullmatch(options.regex, name) is not None
    prefix = options.prefix or f"{tenant.name}-"
    return name.startswith(prefix) and len(name) > len(prefix)


# --- labels -----------------------------------------------------------------------------------


def reserved_key(key: str, tenancy_keys: Sequence[str]) -> bool:
    """A label or annotation key in a domain the platform owns (the tenancy labels' too)."""
    if key in ALLOWED_SYSTEM_KEYS:
        return False
    domain, sep, _ = key.rpartition("/")
    if not sep:
        return False
    domains = {*RESERVED_DOMAINS, *(k.rpartition("/")[0] for k in tenancy_keys if "/" in k)}
    return any(domain == d or domain.endswith("." + d) for d in domains)


def tenancy_claim(labels: Mapping[str, str], tenancy_keys: Sequence[str]) -> dict[str, str]:
    """The tenancy labels a request sets (key -> value)."""
    return {k: labels[k] for k in tenancy_keys if k in labels}


def claims(tenant: Tenant, claim: Mapping[str, str]) -> bool:
    """Whether the tenancy labels sent are exactly the ones this tenant's namespaces carry."""
    return dict(claim) == {options_of(tenant).label_key: tenant.label_value}


# --- create -----------------------------------------------------------------------------------


def decide_create(
    body: object,
    owned: Sequence[Tenant],
    tenancy_keys: Sequence[str],
    assigned: frozenset[str] = frozenset(),
) -> Creation | status.ApiError:
    """The namespace to create for one of `owned` (the caller's tenants as owner), or why not.

    `tenancy_keys`: every label key that assigns a namespace to a tenant (ours, Capsule's).
    `assigned`: names some tenant lists explicitly (the platform gave them away already).
    Quota is not judged here: it needs the count at the moment of creation (`over_quota`).
    """
    if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
        return status.bad_request("the body must be a Namespace object")
    if body.get("kind", "Namespace") != "Namespace" or body.get("apiVersion", "v1") != "v1":
        return status.bad_request("the body must be a v1 Namespace")
    meta: dict[str, Any] = body.get("metadata") or {}
    unknown = _unknown_field(body, meta)
    if unknown is not None:
        # As the API server's strict field validation words it. Refused, not forwarded: what
        # was checked here must be all the API server reads (older decoders matched field
        # names case-insensitively, so a "Metadata" could carry labels past the check).
        return status.bad_request(f'strict decoding error: unknown field "{unknown}"')
    name = meta.get("name")
    if not name:
        if meta.get("generateName"):
            return refused("", "namespace self-service needs metadata.name (not generateName)")
        cause = {
            "reason": "FieldValueRequired",
            "message": "Required value: name or generateName is required",
            "field": "metadata.name",
        }
        return invalid("", [cause])
    if not isinstance(name, str):
        return status.bad_request("metadata.name must be a string")
    bad_name = name_invalid(name)
    if bad_name is not None:
        return bad_name
    if reserved(name):
        return refused(name, "the name is reserved for the platform")
    if name in assigned:
        return refused(name, "the name is assigned to a tenant by the platform")
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if not _string_map(labels) or not _string_map(annotations):
        return status.bad_request("metadata.labels and metadata.annotations must map strings")
    problem = _platform_keys(name, labels, annotations, tenancy_keys)
    if problem is not None:
        return problem
    chosen = choose_tenant(name, owned, tenancy_claim(labels, tenancy_keys))
    if isinstance(chosen, status.ApiError):
        return chosen
    key = options_of(chosen).label_key
    namespace = {
        **body,
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {**meta, "labels": {**labels, key: chosen.label_value}},
    }
    return Creation(chosen, namespace)


def _unknown_field(body: Mapping[str, Any], meta: Mapping[str, Any]) -> str | None:
    for key in sorted(body):
        if key not in _NAMESPACE_FIELDS:
            return key
    for key in sorted(meta):
        if key not in _META_FIELDS:
            return f"metadata.{key}"
    return None


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _platform_keys(
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    tenancy_keys: Sequence[str],
) -> status.ApiError | None:
    for what, keys in (("label", labels), ("annotation", annotations)):
        for key in sorted(keys):
            if what == "label" and key in tenancy_keys:
                continue  # judged against the tenants the caller owns
            if reserved_key(key, tenancy_keys):
                return refused(name, f'the {what} "{key}" is reserved for the platform')
    return None


def choose_tenant(
    name: str, owned: Sequence[Tenant], claim: Mapping[str, str]
) -> Tenant | status.ApiError:
    """The one owned tenant the namespace is for: the one its tenancy label names, else the
    one whose name rule it fits. A label naming a tenant the caller does not own is refused."""
    candidates = list(owned)
    if claim:
        candidates = [t for t in owned if claims(t, claim)]
        if not candidates:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(claim.items()))
            return refused(name, f"the label {shown} names no tenant you own")
    fitting = [t for t in candidates if name_allowed(t, name)]
    if not fitting:
        rules = "; ".join(f'tenant "{t.name}": names must {name_rule(t)}' for t in candidates)
        return refused(name, rules)
    if len(fitting) > 1:
        names = ", ".join(sorted(f'"{t.name}"' for t in fitting))
        return refused(name, f"the name fits tenants {names}: set the tenant's label to choose one")
    return fitting[0]


def over_quota(creation: Creation, held: int) -> status.ApiError | None:
    """403 when the tenant already holds its quota of namespaces (`held`, pending included)."""
    quota = options_of(creation.tenant).quota
    if quota is None or held < quota:
        return None
    return refused(
        creation.name,
        f'tenant "{creation.tenant.name}" has reached its quota of {quota} namespaces',
    )


def owners_rolebinding(tenant: Tenant, namespace: str) -> dict[str, Any]:
    """The RoleBinding that gives the tenant's owners its owner ClusterRole in `namespace`."""
    group = "rbac.authorization.k8s.io"
    owners = tenant.owners
    subjects: list[dict[str, str]] = [
        {"apiGroup": group, "kind": "User", "name": u} for u in sorted(owners.users)
    ]
    subjects += [{"apiGroup": group, "kind": "Group", "name": g} for g in sorted(owners.groups)]
    for account in sorted(owners.service_accounts):
        sa_namespace, _, sa_name = account.removeprefix("system:serviceaccount:").partition(":")
        subjects.append({"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace})
    return {
        "apiVersion": f"{group}/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": OWNERS_ROLEBINDING,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "tenant-proxy"},
        },
        "roleRef": {
            "apiGroup": group,
            "kind": "ClusterRole",
            "name": options_of(tenant).owner_role,
        },
        "subjects": subjects,
    }


# --- what the proxy does for an owner, as its access reviews say -----------------------------


@dataclass(frozen=True)
class OwnerRights:
    """The namespace creates and deletes the proxy makes for a caller, with its namespace
    creator's rights: the caller's own RBAC has no say there, so its access reviews must not
    either (`kubectl auth can-i create namespaces`, a UI's "new namespace" button)."""

    creatable: Callable[[str], bool] = lambda _name: False
    """Whether a namespace of that name would be created for the caller; "" asks whether any
    would (the caller owns a tenant). Quota is not judged, as RBAC does not judge a quota."""
    deletable: frozenset[str] = field(default_factory=frozenset)
    """The namespaces the proxy deletes for the caller: those labelled for a tenant it owns."""


def owner_rights(
    owned: Sequence[Tenant],
    tenants: Sequence[Tenant],
    tenancy_keys: Sequence[str],
    namespace_owner: Mapping[str, str],
) -> OwnerRights:
    """What `decide_create` and `decide_delete` would let the owner of `owned` do."""
    if not owned:
        return OwnerRights()
    assigned = frozenset().union(*(t.namespaces for t in tenants))

    def creatable(name: str) -> bool:
        if not name:
            return True
        body = {"metadata": {"name": name}}
        return isinstance(decide_create(body, owned, tenancy_keys, assigned), Creation)

    deletable = frozenset(
        name
        for name in namespace_owner
        if isinstance(decide_delete(name, owned, namespace_owner, frozenset()), Tenant)
    )
    return OwnerRights(creatable, deletable)


# --- delete -----------------------------------------------------------------------------------


def decide_delete(
    name: str,
    owned: Sequence[Tenant],
    namespace_owner: Mapping[str, str],
    visible: frozenset[str],
) -> Tenant | status.ApiError | None:
    """The owned tenant whose label the namespace carries (the proxy deletes it), None for a
    namespace the caller sees otherwise (explicitly listed, or by a RoleBinding: its own RBAC
    decides, as before), or 404 for one it does not see, as a get of it answers."""
    value = namespace_owner.get(name)
    for tenant in owned:
        if value is not None and value == tenant.label_value:
            return tenant
    if name in visible:
        return None
    return status.not_found("namespaces", name)
