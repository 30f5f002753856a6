"""classify(): the API path grammar, query rules, and what it refuses to guess about."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.requestinfo import Query, classify, parse_query
from tenant_proxy.status import ApiError


def refused(method: str, path: str, query: str = "") -> ApiError:
    with pytest.raises(ApiError) as caught:
        classify(method, path, query)
    return caught.value


# ---- verbs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        ("GET", "/api/v1/namespaces", "", "list"),
        ("GET", "/api/v1/namespaces/team-a-dev", "", "get"),
        ("HEAD", "/api/v1/nodes/n1", "", "get"),
        ("GET", "/api/v1/namespaces", "watch=true", "watch"),
        ("GET", "/api/v1/namespaces", "watch=false", "list"),
        ("POST", "/api/v1/namespaces", "", "create"),
        ("PUT", "/api/v1/namespaces/x", "", "update"),
        ("PATCH", "/api/v1/namespaces/x", "", "patch"),
        ("DELETE", "/api/v1/namespaces/x", "", "delete"),
        ("DELETE", "/api/v1/persistentvolumes", "", "deletecollection"),
        ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", "", "deletecollection"),
        ("DELETE", "/api/v1/nodes", "fieldSelector=metadata.name%3Dn1", "deletecollection"),
        ("GET", "/api/v1/watch/namespaces", "", "watch"),
        ("GET", "/api/v1/watch/namespaces", "watch=false", "watch"),
        ("GET", "/apis/storage.k8s.io/v1/watch/storageclasses", "", "watch"),
        ("GET", "/apis/storage.k8s.io/v1/watch/storageclasses/gold", "", "watch"),
    ],
)  # fmt: skip
def test_resource_verbs_follow_the_api_server(
    method: str, path: str, query: str, verb: str
) -> None:
    info = classify(method, path, query)
    assert info.is_resource
    assert info.verb == verb


@pytest.mark.parametrize(
    ("value", "watch"),
    [
        ("1", True), ("true", True), ("TRUE", True), ("True", True), ("yes", True), ("t", True),
        ("", True), ("no", True), ("00", True), ("0", False), ("false", False), ("FALSE", False),
        ("fAlSe", False),
    ],
)  # fmt: skip
def test_watch_parameter_is_true_unless_zero_or_false(value: str, watch: bool) -> None:
    # apimachinery's Convert_Slice_string_To_bool: only "0" and "false" (any case) are false.
    info = classify("GET", "/api/v1/namespaces", f"watch={value}")
    assert info.verb == ("watch" if watch else "list")
    assert info.query.watch is watch


def test_bare_watch_key_means_watch() -> None:
    assert classify("GET", "/api/v1/namespaces", "watch").verb == "watch"


def test_first_watch_value_wins() -> None:
    assert classify("GET", "/api/v1/namespaces", "watch=0&watch=1").verb == "list"
    assert classify("GET", "/api/v1/namespaces", "watch=1&watch=0").verb == "watch"


def test_legacy_watch_path_from_the_transcript() -> None:
    info = classify(
        "GET",
        "/api/v1/watch/namespaces",
        "timeoutSeconds=1&labelSelector=example.com/tenant%3Dteam-b",
    )
    assert (info.verb, info.resource, info.namespace, info.name) == ("watch", "namespaces", "", "")
    assert info.query.label_selector == "example.com/tenant=team-b"
    assert info.query.timeout_seconds == 1


def test_legacy_watch_of_namespaced_collection() -> None:
    info = classify("GET", "/api/v1/watch/namespaces/team-a-dev/pods", "")
    assert (info.verb, info.namespace, info.resource) == ("watch", "team-a-dev", "pods")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/namespaces/ns/pods/web/exec"),
        ("GET", "/api/v1/namespaces/ns/pods/web/exec"),
        ("POST", "/api/v1/namespaces/ns/pods/web/attach"),
        ("GET", "/api/v1/namespaces/ns/pods/web/portforward"),
        ("GET", "/api/v1/namespaces/ns/pods/web/proxy/metrics"),
        ("OPTIONS", "/api/v1/namespaces/ns/services/web:80/proxy/"),
        ("GET", "/api/v1/nodes/n1/proxy/stats/summary"),
        ("GET", "/api/v1/proxy/nodes/n1"),
    ],
)
def test_streaming_subresources_are_connect(method: str, path: str) -> None:
    assert classify(method, path, "").verb == "connect"


def test_exec_keeps_its_subresource_name_and_namespace() -> None:
    info = classify("POST", "/api/v1/namespaces/ns/pods/web/exec", "command=ls&stdout=true")
    assert (info.namespace, info.resource, info.name, info.subresource) == (
        "ns",
        "pods",
        "web",
        "exec",
    )
    assert info.parts == ("pods", "web", "exec")


def test_log_subresource_is_an_ordinary_get() -> None:
    info = classify("GET", "/api/v1/namespaces/ns/pods/web/log", "follow=true")
    assert (info.verb, info.subresource) == ("get", "log")


def test_unknown_method_on_a_resource_is_method_not_allowed() -> None:
    assert refused("OPTIONS", "/api/v1/namespaces").code == 405
    assert refused("TRACE", "/api/v1/nodes/n1").code == 405


# ---- namespaces and names ---------------------------------------------------------------------


def test_a_namespace_path_names_the_namespace_itself() -> None:
    info = classify("GET", "/api/v1/namespaces/team-a-dev", "")
    assert (info.resource, info.name, info.namespace) == ("namespaces", "team-a-dev", "team-a-dev")


@pytest.mark.parametrize("sub", ["status", "finalize"])
def test_namespace_subresources_stay_on_the_namespace(sub: str) -> None:
    info = classify("PUT", f"/api/v1/namespaces/team-a-dev/{sub}", "")
    assert (info.resource, info.name, info.subresource) == ("namespaces", "team-a-dev", sub)


def test_namespaced_resource_under_a_namespace() -> None:
    info = classify("GET", "/apis/apps/v1/namespaces/ns/deployments/web/scale", "")
    assert (info.api_prefix, info.api_group, info.api_version) == ("apis", "apps", "v1")
    assert (info.namespace, info.resource, info.name, info.subresource) == (
        "ns",
        "deployments",
        "web",
        "scale",
    )


def test_list_with_exact_name_field_selector_carries_that_name() -> None:
    info = classify("GET", "/api/v1/namespaces", "fieldSelector=metadata.name%3Dteam-a-dev")
    assert (info.verb, info.name) == ("list", "team-a-dev")


@pytest.mark.parametrize(
    "selector",
    ["metadata.name!=x", "status.phase=Active", "metadata.name=a/b", "metadata.name=..", "bad"],
)
def test_field_selectors_that_pin_no_valid_name_leave_name_empty(selector: str) -> None:
    info = classify("GET", "/api/v1/namespaces", f"fieldSelector={quote(selector, safe='')}")
    assert (info.verb, info.name) == ("list", "")


# ---- non-resource requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/readyz", "/openapi/v2",
     "/version", "/.well-known/openid-configuration", "/healthz/etcd"],
)  # fmt: skip
def test_discovery_and_other_urls_are_non_resource(path: str) -> None:
    info = classify("GET", path, "")
    assert not info.is_resource
    assert info.verb == "get"
    assert info.path == path


def test_non_resource_verb_is_the_lower_case_method() -> None:
    assert classify("POST", "/apis", "").verb == "post"


def test_group_discovery_keeps_its_api_prefix() -> None:
    info = classify("GET", "/apis/apps/v1", "")
    assert (info.is_resource, info.api_prefix, info.api_group) == (False, "apis", "")


# ---- the raw path -----------------------------------------------------------------------------


def test_path_is_exactly_the_raw_path_while_fields_are_decoded() -> None:
    raw = "/api/v1/namespaces/te%61m/pods/w%3Aeb"
    info = classify("GET", raw, "")
    assert info.path == raw
    assert (info.namespace, info.name) == ("team", "w:eb")


def test_trailing_slash_is_ignored_like_the_api_server() -> None:
    info = classify("GET", "/api/v1/namespaces/", "")
    assert (info.verb, info.resource, info.path) == ("list", "namespaces", "/api/v1/namespaces/")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/../nodes", "/api/v1/namespaces/./x", "/api/v1/..", "/api/v1/.",
        "/api//v1/namespaces", "//api/v1/namespaces", "/api/v1/namespaces//",
        "/api/v1/namespaces/a%2Fb", "/api/v1/namespaces/a%2fb", "/api/v1/%2e%2e/nodes",
        "/api/v1/namespaces/%2E", "/api/v1/namespaces/a%2e", "/api/v1/namespaces/a%00",
        "/api/v1/namespaces/a%5Cb", "/api/v1/namespaces/a\\b", "/api/v1/namespaces/a%",
        "/api/v1/namespaces/a%zz", "/api/v1/namespaces/a%25", "/api/v1/namespaces/a%ff",
        "/api/v1/namespaces/a b", "/api/v1/namespaces/ä", "/api/v1/namespaces/a%0a",
        "api/v1/namespaces", "", "*", "http://evil/api/v1/namespaces", "/api/v1/namespaces/a#b",
    ],
)  # fmt: skip
def test_ambiguous_or_malformed_paths_are_refused(path: str) -> None:
    err = refused("GET", path)
    assert (err.code, err.reason) == (400, "BadRequest")


def test_special_verb_without_a_resource_is_refused() -> None:
    assert refused("GET", "/api/v1/watch").code == 400
    assert refused("GET", "/apis/apps/v1/proxy/").code == 400


SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=10).filter(
    lambda s: s not in (".", "..")
)
AMBIGUITIES = ["..", ".", "", "%2F", "%2f", "%2e", "%2E", "%00", "%5C", "\\", "%2e%2e", "%zz", "%-"]


@settings(max_examples=300)
@given(
    st.lists(SEGMENT, min_size=1, max_size=6),
    st.sampled_from(AMBIGUITIES),
    st.data(),
)
def test_any_ambiguity_anywhere_in_a_path_is_refused(
    segments: list[str], ambiguity: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(segments) - 1))
    if ambiguity in ("..", ".", ""):
        segments.insert(at, ambiguity)  # a whole segment
    else:
        word = segments[at]
        cut = data.draw(st.integers(0, len(word)))
        segments[at] = word[:cut] + ambiguity + word[cut:]
    path = "/" + "/".join(["api", "v1", *segments])
    assert refused(data.draw(st.sampled_from(["GET", "POST", "DELETE"])), path).code == 400


# ---- query ------------------------------------------------------------------------------------


def test_query_fields_are_decoded() -> None:
    q = parse_query(
        "labelSelector=a%3Db%2Cc+in+%28x%29&fieldSelector=spec.x%3Dy&resourceVersion=10"
        "&resourceVersionMatch=NotOlderThan&limit=500&continue=abc%3D%3D&timeoutSeconds=30"
        "&allowWatchBookmarks=true&sendInitialEvents=true&includeObject=None"
    )
    assert q.label_selector == "a=b,c in (x)"
    assert q.field_selector == "spec.x=y"
    assert (q.resource_version, q.resource_version_match) == ("10", "NotOlderThan")
    assert (q.limit, q.continue_token, q.timeout_seconds) == (500, "abc==", 30)
    assert (q.allow_watch_bookmarks, q.send_initial_events, q.include_object) == (
        True,
        True,
        "None",
    )


def test_absent_parameters_are_none_or_false() -> None:
    q = parse_query("")
    assert (q.label_selector, q.limit, q.send_initial_events, q.watch) == (None, None, None, False)
    assert q.pairs == ()
    assert parse_query("sendInitialEvents=false").send_initial_events is False


def test_pairs_keep_order_and_repeats_and_raw_is_verbatim() -> None:
    raw = "x=1&limit=5&x=2&flag&&y=%20+"
    q = parse_query(raw)
    assert q.raw == raw
    assert q.pairs == (("x", "1"), ("limit", "5"), ("x", "2"), ("flag", ""), ("y", "  "))
    assert q.first("x") == "1"


def test_first_of_a_repeated_ordinary_parameter_counts() -> None:
    assert parse_query("limit=5&limit=7").limit == 5


@pytest.mark.parametrize(
    "query",
    [
        "labelSelector=a%3Db&labelSelector=c",
        "labelSelector=a&label%53elector=b",
        "fieldSelector=a%3Db&fieldSelector=c",
        "labelSelector=a;labelSelector=b",
        "limit=1;watch=true",
        "a=b;c",
        "x=%zz",
        "x=%",
        "%ff=1",
        "limit=ten",
        "limit=1_000",
        "limit= 5",
        "timeoutSeconds=1.5",
        "limit=99999999999999999999",
    ],
)
def test_ambiguous_or_malformed_queries_are_refused(query: str) -> None:
    err = refused("GET", "/api/v1/namespaces", query)
    assert (err.code, err.reason) == (400, "BadRequest")


def test_integers_parse_as_go_parses_them() -> None:
    assert parse_query("limit=%2B5").limit == 5
    assert parse_query("limit=-1").limit == -1
    assert parse_query("limit=007").limit == 7


def test_encoded_semicolon_is_data() -> None:
    assert parse_query("labelSelector=a%3Bb").label_selector == "a;b"


# ---- with_params: labelSelector ---------------------------------------------------------------


def test_setting_label_selector_replaces_in_place() -> None:
    q = parse_query("limit=500&labelSelector=app%3Dweb&watch=1")
    assert q.with_params({"labelSelector": "tenant in (a,b)"}) == (
        "limit=500&labelSelector=tenant%20in%20%28a%2Cb%29&watch=1"
    )


def test_setting_label_selector_appends_when_the_client_sent_none() -> None:
    assert (
        parse_query("limit=5").with_params({"labelSelector": "a=b"})
        == "limit=5&labelSelector=a%3Db"
    )
    assert parse_query("").with_params({"labelSelector": "a=b"}) == "labelSelector=a%3Db"


def test_setting_label_selector_finds_an_encoded_key() -> None:
    q = parse_query("label%53elector=x&a=1")
    assert q.with_params({"labelSelector": "y"}) == "labelSelector=y&a=1"


def test_setting_label_selector_keeps_even_empty_chunks_verbatim() -> None:
    assert (
        parse_query("a=1&&b=%2B&").with_params({"labelSelector": "x"})
        == "a=1&&b=%2B&&labelSelector=x"
    )


def test_setting_label_selector_works_on_a_query_built_from_its_raw_text() -> None:
    query = Query(raw="limit=5&labelSelector=a")
    assert query.with_params({"labelSelector": "b"}) == "limit=5&labelSelector=b"


def test_setting_an_empty_label_selector_removes_it() -> None:
    assert parse_query("a=1&labelSelector=x&b=2").with_params({"labelSelector": ""}) == "a=1&b=2"


RAW_CHARS = "abcXYZ019-._~%2B%20+=!*'(),:@/?"
raw_keys = st.sampled_from(["includeObject", "watch", "continue", "x", "a%20b", "resourceVersion"])
raw_values = st.lists(
    st.sampled_from(["a", "Z", "0", "-", ".", "_", "~", "%2B", "%20", "+", "%3D", "!", "*", ":"]),
    max_size=6,
).map("".join)


@settings(max_examples=300)
@given(
    others=st.lists(st.tuples(raw_keys, raw_values), max_size=8),
    client_selector=st.one_of(st.none(), raw_values),
    at=st.integers(0, 8),
    selector=st.text(min_size=1, max_size=30),
)
def test_setting_label_selector_round_trips_every_other_parameter_byte_for_byte(
    others: list[tuple[str, str]], client_selector: str | None, at: int, selector: str
) -> None:
    chunks = [f"{k}={v}" for k, v in others]
    if client_selector is not None:
        chunks.insert(min(at, len(chunks)), f"labelSelector={client_selector}")
    rewritten = parse_query("&".join(chunks)).with_params({"labelSelector": selector})
    out = rewritten.split("&")
    kept = [c for c in out if not c.startswith("labelSelector=")]
    assert kept == [f"{k}={v}" for k, v in others]
    mine = [i for i, c in enumerate(out) if c.startswith("labelSelector=")]
    assert len(mine) == 1
    if client_selector is not None:
        assert mine[0] == min(at, len(others))
    else:
        assert mine[0] == len(out) - 1
    assert parse_query(rewritten).label_selector == selector
    assert dict(parse_qsl(rewritten, keep_blank_values=True))["labelSelector"] == selector


def test_with_params_replaces_encoded_spellings_and_every_repeat() -> None:
    q = parse_query("include%4Fbject=None&as=x&includeObject=Object")
    changed = q.with_params({"includeObject": "Metadata", "labelSelector": "a=b"})
    assert changed == "includeObject=Metadata&as=x&labelSelector=a%3Db"
    assert parse_query(changed).include_object == "Metadata"


def test_with_params_removes_with_none() -> None:
    assert parse_query("a=1&continue=x&b=2").with_params({"continue": None}) == "a=1&b=2"
