"""The emulator's pure logic: RequestInfo paths, selectors, patches, the versioned store."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import paths, protobuf
from tenant_proxy.emulator.patch import (
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from tenant_proxy.emulator.selectors import (
    SelectorError,
    labels_match,
    parse_fields,
    parse_labels,
    supported_fields,
)
from tenant_proxy.emulator.store import Store, TooOld

# --- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "verb", "group", "resource", "sub", "ns", "name"),
    [
        ("GET", "/api/v1/namespaces", "list", "", "namespaces", "", "", ""),
        ("GET", "/api/v1/namespaces/team-a", "get", "", "namespaces", "", "team-a", "team-a"),
        ("GET", "/api/v1/namespaces/a/pods", "list", "", "pods", "", "a", ""),
        ("GET", "/api/v1/namespaces/a/pods/p/log", "get", "", "pods", "log", "a", "p"),
        ("POST", "/api/v1/namespaces/a/pods/p/exec", "create", "", "pods", "exec", "a", "p"),
        ("GET", "/api/v1/watch/namespaces", "watch", "", "namespaces", "", "", ""),
        ("GET", "/api/v1/watch/namespaces/a/pods/p", "watch", "", "pods", "", "a", "p"),
        ("DELETE", "/api/v1/namespaces/a/pods", "deletecollection", "", "pods", "", "a", ""),
        ("PUT", "/api/v1/namespaces/a/status", "update", "", "namespaces", "status", "a", "a"),
        (
            "GET",
            "/apis/apps/v1/namespaces/a/deployments/d",
            "get",
            "apps",
            "deployments",
            "",
            "a",
            "d",
        ),
        (
            "PATCH",
            "/apis/storage.k8s.io/v1/storageclasses/gold",
            "patch",
            "storage.k8s.io",
            "storageclasses",
            "",
            "",
            "gold",
        ),
    ],
)
def test_paths_follow_kube_apiserver_request_info(
    method: str, path: str, verb: str, group: str, resource: str, sub: str, ns: str, name: str
) -> None:
    a = paths.parse(method, path, {})
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == (
        verb,
        group,
        resource,
        sub,
        ns,
        name,
    )


def test_watch_query_and_name_field_selector_shape_the_verb() -> None:
    a = paths.parse("GET", "/api/v1/namespaces?watch=true", {"watch": "true"})
    assert a.verb == "watch"
    b = paths.parse("GET", "/api/v1/nodes", {"fieldSelector": "metadata.name=n1"})
    assert (b.verb, b.name) == ("list", "n1")
    c = paths.parse("GET", "/api/v1/nodes", {"fieldSelector": "metadata.name!=n1"})
    assert c.name == ""


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps",
        "/apis/apps/v1",
        "/version",
        "/healthz",
        "/openapi/v3/apis/apps/v1",
    ],
)
def test_discovery_and_other_paths_are_non_resource(path: str) -> None:
    a = paths.parse("GET", path, {})
    assert not a.resource_request
    assert a.verb == "get"


def test_encoded_segments_are_decoded_after_splitting() -> None:
    a = paths.parse("GET", "/api/v1/namespaces/a%2Fb/pods", {})
    assert a.namespace == "a/b"
    assert a.resource == "pods"


# --- selectors -----------------------------------------------------------------------------


def obj(labels: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": "x", "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (b,c)", {"a": "c"}, True),
        ("a notin (b,c)", {"a": "c"}, False),
        ("a notin (b,c)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("example.com/tenant in (team-a,team-b),!missing", {"example.com/tenant": "team-b"}, True),
        ("a>3", {"a": "4"}, True),
        ("a<3", {"a": "x"}, False),
    ],
)
def test_label_selectors_match_like_the_real_server(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert labels_match(parse_labels(selector), obj(labels)) is expected


@pytest.mark.parametrize("bad", ["a in (", "a in b", "a=b=c", "=b", "a b", "a in (b c)"])
def test_malformed_label_selectors_raise(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_labels(bad)


_label = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@given(st.dictionaries(_label, _label, max_size=4), _label, _label)
def test_equality_and_inequality_are_complements(
    labels: dict[str, str], key: str, value: str
) -> None:
    eq = labels_match(parse_labels(f"{key}={value}"), obj(labels))
    ne = labels_match(parse_labels(f"{key}!={value}"), obj(labels))
    assert eq != ne


@given(
    st.dictionaries(_label, _label, max_size=4), _label, st.lists(_label, min_size=1, max_size=3)
)
def test_in_and_notin_are_complements(labels: dict[str, str], key: str, values: list[str]) -> None:
    listed = ",".join(values)
    inside = labels_match(parse_labels(f"{key} in ({listed})"), obj(labels))
    outside = labels_match(parse_labels(f"{key} notin ({listed})"), obj(labels))
    assert inside != outside


def test_field_selectors_check_support_per_resource() -> None:
    pods = supported_fields("", "pods", True)
    assert parse_fields("spec.nodeName=n1,status.phase!=Failed", pods) == (
        ("spec.nodeName", "=", "n1"),
        ("status.phase", "!=", "Failed"),
    )
    with pytest.raises(SelectorError, match=re.escape("field label not supported: spec.nodeName")):
        parse_fields("spec.nodeName=n1", supported_fields("", "configmaps", True))
    with pytest.raises(
        SelectorError, match=re.escape("field label not supported: metadata.namespace")
    ):
        parse_fields("metadata.namespace=a", supported_fields("", "nodes", False))


def test_field_selector_values_may_escape_commas() -> None:
    fields = parse_fields(r"metadata.name=a\,b", supported_fields("", "pods", True))
    assert fields == (("metadata.name", "=", "a,b"),)


# --- patches -------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=3), _json, max_size=4))
def test_merge_patch_with_itself_minus_nulls_is_identity(doc: dict[str, object]) -> None:
    def strip(v: object) -> object:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if x is not None}
        return v

    clean = strip(doc)
    assert merge_patch(clean, clean) == clean


def test_merge_patch_removes_nulls_and_replaces_lists() -> None:
    target = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"l": [1, 2]}}
    out = merge_patch(target, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"l": [3]}})
    assert out == {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"l": [3]}}


def test_strategic_merge_merges_named_lists_and_drops_directives() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}
    patch = {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "spec": {"containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}]},
    }
    out = strategic_merge_patch(target, patch)
    assert out == {"spec": {"containers": [{"name": "b", "image": "z"}]}}


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "replace", "path": "/a/b/0", "value": 0},
        {"op": "copy", "from": "/a/b", "path": "/c"},
        {"op": "remove", "path": "/a/b/1"},
        {"op": "test", "path": "/c", "value": [0, 2, 3]},
        {"op": "move", "from": "/c", "path": "/d"},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [0, 3]}, "d": [0, 2, 3]}
    assert doc == {"a": {"b": [1, 2]}}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/a", "value": 1}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/zz"}])


# --- store ---------------------------------------------------------------------------------


def ns(name: str, **labels: str) -> dict[str, object]:
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "labels": labels}}


def test_store_rebuilds_past_states_from_history() -> None:
    store = Store()
    store.put("", "namespaces", ns("a"))
    rv1 = store.resource_version
    store.put("", "namespaces", ns("b"))
    store.put("", "namespaces", ns("a", x="1"))
    store.remove("", "namespaces", "", "b")
    past = store.state_at("", "namespaces", None, rv1)
    assert [(o["metadata"]["name"], o["metadata"]["labels"]) for o in past] == [("a", {})]
    now = store.state_at("", "namespaces", None, store.resource_version)
    assert [o["metadata"]["name"] for o in now] == ["a"]


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.booleans()), max_size=30))
def test_every_past_state_within_the_window_is_recoverable(ops: list[tuple[str, bool]]) -> None:
    store = Store(history_window=1000)
    snapshots: dict[int, list[str]] = {0: []}
    for name, delete in ops:
        if delete:
            store.remove("", "namespaces", "", name)
        else:
            store.put("", "namespaces", ns(name))
        snapshots[store.resource_version] = [
            o["metadata"]["name"] for o in store.list_objects("", "namespaces")
        ]
    for rv, names in snapshots.items():
        assert [o["metadata"]["name"] for o in store.state_at("", "namespaces", None, rv)] == names


def test_store_forgets_beyond_its_window_and_after_compaction() -> None:
    store = Store(history_window=3)
    for i in range(6):
        store.put("", "namespaces", ns(f"n{i}"))
    with pytest.raises(TooOld):
        store.events_since("", "namespaces", 1)
    assert [e.rv for e in store.events_since("", "namespaces", 4)] == [5, 6]
    store.compact()
    with pytest.raises(TooOld):
        store.state_at("", "namespaces", None, 5)
    assert store.events_since("", "namespaces", 6) == []


def test_protobuf_envelope_of_a_self_subject_access_review_decodes() -> None:
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    type_meta = field(1, b"authorization.k8s.io/v1") + field(2, b"SelfSubjectAccessReview")
    attrs = field(1, b"team-a-dev") + field(2, b"list") + field(5, b"pods")
    raw = field(2, field(1, attrs))
    body = protobuf.MAGIC + field(1, type_meta) + field(2, raw)
    assert protobuf.decode(body) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"namespace": "team-a-dev", "verb": "list", "resource": "pods"}
        },
    }
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"not protobuf")


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_body_parses_or_is_a_400(body: bytes) -> None:
    from tenant_proxy.emulator.errors import StatusError
    from tenant_proxy.emulator.objects import parse_json

    codes = []
    try:
        parse_json(body)
    except StatusError as err:
        codes.append(err.code)
    assert codes in ([], [400])


def test_deeply_nested_body_is_a_400() -> None:
    from tenant_proxy.emulator.errors import StatusError
    from tenant_proxy.emulator.objects import parse_json

    with pytest.raises(StatusError) as caught:
        parse_json(b"[" * 100_000)
    assert caught.value.code == 400


# --- delete preconditions (k8s.io/apiserver/pkg/storage Preconditions.Check) ----------------


@pytest.mark.parametrize(
    ("preconditions", "message"),
    [
        ({}, None),
        ({"uid": "u-1", "resourceVersion": "7"}, None),
        (
            {"uid": "u-2"},
            'Operation cannot be fulfilled on namespaces "team-a": Precondition failed: '
            "UID in precondition: u-2, UID in object meta: u-1",
        ),
        (
            {"uid": "u-1", "resourceVersion": "6"},
            'Operation cannot be fulfilled on namespaces "team-a": Precondition failed: '
            "ResourceVersion in precondition: 6, ResourceVersion in object meta: 7",
        ),
    ],
)
def test_delete_preconditions_conflict_as_the_api_server_words_it(
    preconditions: dict[str, str], message: str | None
) -> None:
    from tenant_proxy.emulator.errors import StatusError
    from tenant_proxy.emulator.objects import check_preconditions
    from tenant_proxy.emulator.resources import Registry

    namespaces = Registry().lookup("", "v1", "namespaces")
    assert namespaces is not None
    current = {"metadata": {"name": "team-a", "uid": "u-1", "resourceVersion": "7"}}
    if message is None:
        check_preconditions(namespaces, current, {"preconditions": preconditions})
        return
    with pytest.raises(StatusError) as caught:
        check_preconditions(namespaces, current, {"preconditions": preconditions})
    assert (caught.value.code, caught.value.message) == (409, message)
    assert caught.value.details == {"name": "team-a", "kind": "namespaces"}


@given(
    st.lists(
        st.tuples(st.sampled_from(["", "a", "a-b", "b", "a0"]), st.text("abz-0./", min_size=1)),
        max_size=30,
    ),
    st.sampled_from([None, "a", "a-b", "b", "zz"]),
)
def test_in_key_order_is_the_listing_read_lazily(
    keys: list[tuple[str, str]], namespace: str | None
) -> None:
    store = Store()
    for ns, name in keys:
        meta = {"name": name, "namespace": ns} if ns else {"name": name}
        store.put("", "things", {"metadata": meta})
    listed = store.list_objects("", "things", namespace)
    lazy = store.in_key_order("", "things", namespace)
    assert len(lazy) == len(listed)
    assert list(lazy) == listed
    assert lazy[1:3] == listed[1:3]
    if listed:
        assert lazy[-1] == listed[-1]
    with pytest.raises(IndexError):
        lazy[len(listed)]
