"""Namespace self-service decisions (tenancy/self_service.py, plan.py, namespace_protobuf.py).

The name check is compared with an oracle written from apimachinery's IsDNS1123Label rules;
the label property holds for any labels a client may send: a created namespace always carries
exactly the label of one tenant the caller owns, and no other tenancy label.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy import namespace_protobuf, status
from tenant_proxy.identity import Identity
from tenant_proxy.plan import CreateNamespace, DeleteNamespace, PassThrough, plan_request
from tenant_proxy.requestinfo import classify
from tenant_proxy.tenancy import self_service, sources
from tenant_proxy.tenancy.model import Members, NamespaceOptions, Tenant, is_member
from tenant_proxy.tenancy.settings import TenantSettings

OURS = "tenant-proxy.io/tenant"
CAPSULE = "capsule.clastix.io/tenant"
KEYS = (OURS, CAPSULE)


def tenant(
    name: str,
    *,
    owners: tuple[str, ...] = ("alice",),
    prefix: str = "",
    regex: str = "",
    quota: int | None = None,
    key: str = OURS,
) -> Tenant:
    return Tenant(
        name=name,
        owners=Members(users=frozenset(owners)),
        namespace_options=NamespaceOptions(key, prefix=prefix, regex=regex, quota=quota),
    )


def ns(name: Any = "team-a-x", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}


TEAM_A, TEAM_B = tenant("team-a"), tenant("team-b")


def refusal(result: object) -> status.ApiError:
    assert isinstance(result, status.ApiError), result
    return result


def created(result: object) -> self_service.Creation:
    assert isinstance(result, self_service.Creation), result
    return result


# --- names ------------------------------------------------------------------------------------


def is_dns1123_label(name: str) -> bool:
    """Oracle, from the rules as apimachinery states them (no regex)."""
    alnum = set(string.ascii_lowercase + string.digits)
    return (
        0 < len(name) <= 63
        and set(name) <= alnum | {"-"}
        and name[0] in alnum
        and name[-1] in alnum
    )


@given(st.text(alphabet=string.ascii_letters + string.digits + "-._/", max_size=80))
def test_a_name_is_refused_422_exactly_when_it_is_not_an_rfc1123_label(name: str) -> None:
    problem = self_service.name_invalid(name) if name else None
    if not name or is_dns1123_label(name):
        assert problem is None
        return
    assert problem is not None
    assert (problem.code, problem.reason) == (422, "Invalid")
    assert problem.message.startswith(f'Namespace "{name}" is invalid: metadata.name: ')
    assert problem.details is not None
    assert all(c["field"] == "metadata.name" for c in problem.details["causes"])
    too_long = "must be no more than 63 characters" in problem.message
    assert too_long == (len(name) > 63)


def test_the_422_is_worded_as_the_api_servers() -> None:
    # tests/../k8s-reference/create-invalid-422.txt, for "Not_Valid".
    problem = self_service.name_invalid("Not_Valid")
    assert problem is not None
    assert problem.body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Namespace "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid": '
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character (e.g. 'my-name',  or "
        "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        "reason": "Invalid",
        "details": {
            "name": "Not_Valid",
            "kind": "Namespace",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "Not_Valid": a lowercase RFC 1123 label must '
                    "consist of lower case alphanumeric characters or '-', and must start and "
                    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    "field": "metadata.name",
                }
            ],
        },
        "code": 422,
    }


@pytest.mark.parametrize(
    ("name", "reserved"),
    [
        ("default", True),
        ("kube-system", True),
        ("kube-anything", True),
        ("tenant-proxy", True),
        ("tenant-proxy-e2e", True),
        ("openshift-x", True),
        ("team-a-default", False),
        ("kubernetes", False),
        ("team-a-kube-x", False),
    ],
)
def test_reserved_names(name: str, reserved: bool) -> None:
    assert self_service.reserved(name) is reserved


@pytest.mark.parametrize(
    ("rules", "name", "allowed"),
    [
        ({}, "team-a-x", True),
        ({}, "team-a-", False),  # the prefix alone is not a name of the tenant's
        ({}, "team-ab", False),
        ({}, "team-b-x", False),
        ({"prefix": "a-"}, "a-x", True),
        ({"prefix": "a-"}, "team-a-x", False),
        ({"regex": "(dev|prod)-a"}, "dev-a", True),
        ({"regex": "(dev|prod)-a"}, "dev-a-2", False),  # matched against the whole name
        ({"regex": "(dev|prod)-a"}, "x-dev-a", False),
    ],
)
def test_name_rules(rules: dict[str, str], name: str, allowed: bool) -> None:
    shaped = tenant("team-a", prefix=rules.get("prefix", ""), regex=rules.get("regex", ""))
    assert self_service.name_allowed(shaped, name) is allowed


# --- create -----------------------------------------------------------------------------------


def test_the_tenants_label_is_added_and_the_rest_of_the_object_kept() -> None:
    body = ns("team-a-x", labels={"team": "a"}, annotations={"note": "n"})
    body["spec"] = {"finalizers": ["kubernetes"]}
    creation = created(self_service.decide_create(body, [TEAM_A], KEYS))
    assert creation.tenant is TEAM_A
    assert creation.namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "team-a-x",
            "labels": {"team": "a", OURS: "team-a"},
            "annotations": {"note": "n"},
        },
        "spec": {"finalizers": ["kubernetes"]},
    }


def test_a_capsule_tenants_namespace_gets_capsules_label() -> None:
    capsule = tenant("team-a", key=CAPSULE)
    creation = created(self_service.decide_create(ns(), [capsule], KEYS))
    assert creation.namespace["metadata"]["labels"] == {CAPSULE: "team-a"}


@pytest.mark.parametrize(
    ("labels", "accepted"),
    [
        ({OURS: "team-a"}, True),
        ({OURS: "team-b"}, False),
        ({OURS: ""}, False),
        ({CAPSULE: "team-a"}, False),  # Capsule's label would give it to a Capsule tenant
        ({OURS: "team-a", CAPSULE: "team-a"}, False),
    ],
)
def test_a_tenancy_label_must_name_the_owned_tenant_under_its_key(
    labels: dict[str, str], accepted: bool
) -> None:
    result = self_service.decide_create(ns(labels=labels), [TEAM_A], KEYS)
    if accepted:
        assert created(result).namespace["metadata"]["labels"] == {OURS: "team-a"}
    else:
        error = refusal(result)
        assert error.code == 403
        assert "names no tenant you own" in error.message


labels_drawn = st.dictionaries(
    st.sampled_from([*KEYS, "team", "tenant-proxy.io/other", "x.kubernetes.io/y"]),
    st.sampled_from(["team-a", "team-b", "team-c", ""]),
    max_size=4,
)


@given(labels_drawn, st.sampled_from(["team-a-x", "team-b-x", "team-c-x", "kube-x"]))
def test_a_created_namespace_always_carries_exactly_one_owned_tenants_label(
    labels: dict[str, str], name: str
) -> None:
    owned = [TEAM_A, tenant("team-b", key=CAPSULE)]
    result = self_service.decide_create(ns(name, labels=labels), owned, KEYS)
    if isinstance(result, status.ApiError):
        assert result.code == 403
        return
    sent = result.namespace["metadata"]["labels"]
    assert result.tenant in owned
    key = result.tenant.namespace_options.label_key  # type: ignore[union-attr]
    assert {k: v for k, v in sent.items() if k in KEYS} == {key: result.tenant.name}
    assert self_service.name_allowed(result.tenant, name)


@pytest.mark.parametrize(
    ("meta", "fragment"),
    [
        ({"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}, "label"),
        ({"labels": {"kubernetes.io/x": "y"}}, "label"),
        ({"labels": {"node-restriction.kubernetes.io/x": "y"}}, "label"),
        ({"labels": {"tenant-proxy.io/other": "y"}}, "label"),
        ({"labels": {"k8s.io/x": "y"}}, "label"),
        ({"annotations": {"scheduler.alpha.kubernetes.io/node-selector": "a=b"}}, "annotation"),
        ({"annotations": {"capsule.clastix.io/x": "y"}}, "annotation"),
    ],
)
def test_keys_in_platform_domains_are_refused(meta: dict[str, Any], fragment: str) -> None:
    error = refusal(self_service.decide_create(ns(**meta), [TEAM_A], KEYS))
    assert error.code == 403
    assert f"the {fragment} " in error.message
    assert "is reserved for the platform" in error.message


def test_keys_kubectl_and_the_api_server_set_are_accepted() -> None:
    meta = {
        "labels": {"kubernetes.io/metadata.name": "team-a-x", "notkubernetes.io/x": "y"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    }
    created(self_service.decide_create(ns(**meta), [TEAM_A], KEYS))


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ([], 400, "must be a Namespace"),
        ({"metadata": []}, 400, "must be a Namespace"),
        ({**ns(), "kind": "ConfigMap"}, 400, "v1 Namespace"),
        ({**ns(), "apiVersion": "v2"}, 400, "v1 Namespace"),
        (ns(""), 422, "Required value: name or generateName is required"),
        (ns(None), 422, "Required value"),
        (ns(7), 400, "must be a string"),
        (ns("", generateName="team-a-"), 403, "needs metadata.name"),
        (ns(labels={"a": 1}), 400, "must map strings"),
        (ns(labels=["a"]), 400, "must map strings"),
        (ns("team-a-X"), 422, "is invalid"),
        ({**ns(), "Metadata": {"labels": {OURS: "team-b"}}}, 400, 'unknown field "Metadata"'),
        (ns(Labels={OURS: "team-b"}), 400, 'unknown field "metadata.Labels"'),
        (ns("team-a-given"), 403, "assigned to a tenant by the platform"),
        (ns("kube-x"), 403, "reserved"),
        (ns("team-b-x"), 403, 'tenant "team-a": names must start with "team-a-"'),
    ],
)
def test_refusals(body: object, code: int, fragment: str) -> None:
    assigned = frozenset({"team-a-given"})
    error = refusal(self_service.decide_create(body, [TEAM_A], KEYS, assigned))
    assert error.code == code
    assert fragment in error.message


def test_a_name_two_owned_tenants_allow_needs_the_label_to_choose() -> None:
    a, b = tenant("a", prefix="shared-"), tenant("b", prefix="shared-")
    error = refusal(self_service.decide_create(ns("shared-x"), [a, b], KEYS))
    assert 'fits tenants "a", "b"' in error.message
    chosen = created(self_service.decide_create(ns("shared-x", labels={OURS: "b"}), [a, b], KEYS))
    assert chosen.tenant is b


def test_a_refused_name_lists_the_rule_of_each_owned_tenant() -> None:
    error = refusal(
        self_service.decide_create(ns("x-y"), [TEAM_A, tenant("r", regex="r-[0-9]+")], KEYS)
    )
    assert error.message == (
        'namespaces "x-y" is forbidden: tenant "team-a": names must start with "team-a-"; '
        "tenant \"r\": names must match the regular expression 'r-[0-9]+'"
    )
    assert error.details == {"name": "x-y", "kind": "namespaces"}


@pytest.mark.parametrize(
    ("held", "quota", "refused"),
    [(0, None, False), (2, 3, False), (3, 3, True), (0, 0, True), (9, 3, True)],
)
def test_quota(held: int, quota: int | None, refused: bool) -> None:
    creation = created(self_service.decide_create(ns(), [tenant("team-a", quota=quota)], KEYS))
    error = self_service.over_quota(creation, held)
    assert (error is not None) is refused
    if error is not None:
        assert error.code == 403
        assert error.message.endswith(
            f'tenant "team-a" has reached its quota of {quota} namespaces'
        )


def test_the_owners_rolebinding_binds_the_owner_role_to_every_owner() -> None:
    owned = Tenant(
        name="t",
        owners=Members(
            users=frozenset({"alice"}),
            groups=frozenset({"devs"}),
            service_accounts=frozenset({"system:serviceaccount:ci:deployer"}),
        ),
        namespace_options=NamespaceOptions(OURS, owner_role="edit"),
    )
    binding = self_service.owners_rolebinding(owned, "t-x")
    assert binding["metadata"]["namespace"] == "t-x"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "edit",
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"},
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
    ]


# --- delete -----------------------------------------------------------------------------------


def test_delete_of_a_namespace_labelled_for_an_owned_tenant_is_the_proxys() -> None:
    owner = {"team-a-x": "team-a", "team-b-x": "team-b"}
    visible = frozenset({"team-a-x", "listed", "bound-by-rolebinding"})
    assert self_service.decide_delete("team-a-x", [TEAM_A], owner, visible) is TEAM_A
    # Seen otherwise: as before, the caller's own RBAC decides.
    assert self_service.decide_delete("listed", [TEAM_A], owner, visible) is None
    for foreign in ("team-b-x", "missing"):
        error = refusal(self_service.decide_delete(foreign, [TEAM_A], owner, visible))
        assert error.body()["message"] == f'namespaces "{foreign}" not found'
        assert error.code == 404


# --- who owns ---------------------------------------------------------------------------------


def test_owners_are_members_and_members_are_not_owners() -> None:
    t = Tenant(
        name="t",
        members=Members(groups=frozenset({"devs"})),
        owners=Members(users=frozenset({"alice"})),
        namespace_options=NamespaceOptions(OURS),
    )
    alice, dave = Identity("alice"), Identity("dave", groups=("devs",))
    assert is_member(alice, t, frozenset())
    assert self_service.owned_tenants(alice, [t]) == [t]
    assert is_member(dave, t, frozenset())
    assert self_service.owned_tenants(dave, [t]) == []


# --- plan -------------------------------------------------------------------------------------


def plan(method: str, path: str, *, owner: bool = True, tenant_caller: bool = True) -> object:
    info = classify(method, path, "")
    filters = (lambda _gr: True) if tenant_caller else None
    return plan_request(info, filters, owner=lambda: owner)


@pytest.mark.parametrize(
    ("method", "path", "owner", "tenant_caller", "expected"),
    [
        ("POST", "/api/v1/namespaces", True, True, CreateNamespace()),
        ("DELETE", "/api/v1/namespaces/team-a-x", True, True, DeleteNamespace()),
        ("POST", "/api/v1/namespaces", False, True, PassThrough()),  # a member: RBAC decides
        ("DELETE", "/api/v1/namespaces/x", False, True, PassThrough()),
        ("POST", "/api/v1/namespaces", True, False, PassThrough()),  # the admin listener
        ("DELETE", "/api/v1/namespaces", True, True, PassThrough()),  # deletecollection
        ("PUT", "/api/v1/namespaces/x/finalize", True, True, PassThrough()),
        ("PUT", "/api/v1/namespaces/x", True, True, PassThrough()),
        ("PATCH", "/api/v1/namespaces/x", True, True, PassThrough()),
        ("POST", "/api/v1/namespaces/team-a-x/configmaps", True, True, PassThrough()),
    ],
)
def test_self_service_plans(
    method: str, path: str, owner: bool, tenant_caller: bool, expected: object
) -> None:
    assert plan(method, path, owner=owner, tenant_caller=tenant_caller) == expected


# --- sources ----------------------------------------------------------------------------------


def test_config_owners_and_namespace_options_reach_the_tenant() -> None:
    settings = TenantSettings.model_validate(
        {
            "name": "team-a",
            "owners": {"users": ["alice"], "groups": ["leads"], "serviceaccounts": ["ci:bot"]},
            "namespace_regex": "a-[a-z]+",
            "namespace_quota": 3,
            "owner_cluster_role": "edit",
        }
    )
    (built,) = sources.tenants_from_settings([settings], OURS)
    assert built.owners == Members(
        users=frozenset({"alice"}),
        groups=frozenset({"leads"}),
        service_accounts=frozenset({"system:serviceaccount:ci:bot"}),
    )
    assert built.namespace_options == NamespaceOptions(
        OURS, prefix="", regex="a-[a-z]+", quota=3, owner_role="edit"
    )


def test_a_tenant_cr_without_options_gets_the_default_rule() -> None:
    built = sources.tenant_from_cr({"metadata": {"name": "t"}, "spec": {}}, OURS)
    assert built.namespace_options == NamespaceOptions(OURS)
    assert self_service.name_rule(built) == 'start with "t-"'


def test_capsule_owners_own_and_its_quota_counts() -> None:
    built = sources.tenant_from_capsule(
        {
            "metadata": {"name": "oil"},
            "spec": {
                "owners": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "g"}],
                "namespaceOptions": {"quota": 2},
            },
        }
    )
    assert self_service.owned_tenants(Identity("bob", groups=("g",)), [built]) == [built]
    assert built.namespace_options == NamespaceOptions(CAPSULE, quota=2)


@pytest.mark.parametrize(
    "options",
    [{"quota": -1}, {"quota": True}, {"quota": "3"}, {"regex": "(x"}, {"prefix": 3}],
)
def test_unreadable_namespace_options_refuse_the_tenant(options: dict[str, Any]) -> None:
    with pytest.raises(sources.TenantSpecError, match="namespaceOptions"):
        sources.tenant_from_cr({"metadata": {"name": "t"}, "spec": {"namespaceOptions": options}})


# --- protobuf bodies --------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode())


def encode(name: str, labels: dict[str, str], *, extra_meta: bytes = b"") -> bytes:
    """A Namespace as client-go's gogo-protobuf writes it (empty fields included)."""
    meta = _string(1, name) + _string(2, "") + _string(3, "") + _string(4, "")
    meta += _string(5, "") + _string(6, "") + _varint(7 << 3) + _varint(0) + _field(8, b"")
    for key, value in labels.items():
        meta += _field(11, _string(1, key) + _string(2, value))
    meta += extra_meta
    raw = _field(1, meta) + _field(2, b"") + _field(3, b"")
    type_meta = _string(1, "v1") + _string(2, "Namespace")
    return b"k8s\x00" + _field(1, type_meta) + _field(2, raw) + _string(3, "") + _string(4, "")


@given(
    st.text(min_size=1, max_size=70),
    st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4),
)
def test_protobuf_namespace_reads_as_its_json(name: str, labels: dict[str, str]) -> None:
    decoded = namespace_protobuf.decode_namespace(encode(name, labels))
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    assert decoded == {"kind": "Namespace", "apiVersion": "v1", "metadata": meta, "spec": {}}


def test_a_protobuf_field_the_decoder_does_not_read_is_refused_not_dropped() -> None:
    owner_reference = _field(13, _string(1, "v1") + _string(2, "Node"))
    with pytest.raises(namespace_protobuf.Unreadable, match="ObjectMeta field 13"):
        namespace_protobuf.decode_namespace(encode("x", {}, extra_meta=owner_reference))


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_unreadable(data: bytes) -> None:
    # Only Unreadable escapes (the proxy turns it into a 415); anything else is a bug.
    for body in (data, b"k8s\x00" + data):
        try:
            decoded = namespace_protobuf.decode_namespace(body)
        except namespace_protobuf.Unreadable:
            continue
        assert decoded["kind"] == "Namespace"


def test_another_kind_in_protobuf_is_unreadable() -> None:
    body = encode("x", {}).replace(b"Namespace", b"ConfigMap")
    with pytest.raises(namespace_protobuf.Unreadable, match="v1/ConfigMap"):
        namespace_protobuf.decode_namespace(body)


def test_the_default_prefix_is_the_tenant_name_and_a_dash() -> None:
    assert re.fullmatch(r'start with "team-a-"', self_service.name_rule(TEAM_A))


# --- what access reviews say of self-service --------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["", "team-a-x", "team-b-x", "kube-x", "default", "team-a-", "Team-a-x"]),
    st.text(alphabet=string.ascii_lowercase + string.digits + "-", max_size=70),
)


@given(
    name=NAMES,
    owned=st.sampled_from([[], [TEAM_A], [TEAM_B], [TEAM_A, TEAM_B]]),
    listed=st.frozensets(st.sampled_from(["team-a-listed", "team-a-x", "other"])),
)
def test_owner_rights_say_what_decide_create_and_decide_delete_do(
    name: str, owned: list[Tenant], listed: frozenset[str]
) -> None:
    prefixed = [tenant(t.name, prefix=f"{t.name}-") for t in owned]
    platform = tenant("platform", owners=("root",))
    platform = Tenant(
        name=platform.name,
        owners=platform.owners,
        namespaces=listed,
        namespace_options=platform.namespace_options,
    )
    owner = {"team-a-x": "team-a", "team-b-x": "team-b", "unlabelled": "nobody"}
    everyone = [*prefixed, platform]
    rights = self_service.owner_rights(prefixed, everyone, KEYS, owner)
    decided = self_service.decide_create(ns(name), prefixed, KEYS, listed)
    expected = isinstance(decided, self_service.Creation) if name else bool(prefixed)
    assert rights.creatable(name) is expected
    deletable = {
        n
        for n in owner
        if isinstance(self_service.decide_delete(n, prefixed, owner, frozenset()), Tenant)
    }
    assert rights.deletable == deletable


def test_owner_rights_of_an_owner_and_of_no_owner() -> None:
    owner = {"team-a-x": "team-a", "team-b-x": "team-b"}
    rights = self_service.owner_rights([tenant("team-a", prefix="team-a-")], [], KEYS, owner)
    created = [rights.creatable(n) for n in ("", "team-a-new", "team-b-new", "kube-system")]
    assert created == [True, True, False, False]
    assert rights.deletable == {"team-a-x"}
    none = self_service.owner_rights([], [TEAM_A], KEYS, owner)
    assert [none.creatable(""), none.creatable("team-a-x")] == [False, False]
    assert none.deletable == frozenset()
