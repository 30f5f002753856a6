"""classify() against an independent port of kube-apiserver's requestinfo.go, on generated paths.

The oracle below is a line-by-line port of NewRequestInfo (k8s.io/apiserver/pkg/endpoints/request/
requestinfo.go, with the ListOptions decoding and fieldSelector metadata.name rule of current
releases). It works, as Go does, on the *decoded* path and on url.Values; classify() works on the
raw path. The proxy adds two things on purpose, mapped here: `connect` for exec/attach/
portforward/proxy, and refusals (400/405) where Go would carry on with an error or an empty verb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tenant_proxy.requestinfo import classify
from tenant_proxy.status import ApiError

# ---- the oracle: a port of requestinfo.go -------------------------------------------------------

SPECIAL_VERBS = {"proxy", "watch"}
SPECIAL_VERBS_NO_SUBRESOURCES = {"proxy"}
NAMESPACE_SUBRESOURCES = {"status", "finalize"}
API_PREFIXES = {"api", "apis"}
GROUPLESS_API_PREFIXES = {"api"}


class OracleError(Exception):
    pass


@dataclass
class GoRequestInfo:
    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


def go_split_path(path: str) -> list[str]:
    path = path.strip("/")
    return [] if path == "" else path.split("/")


def go_bool(values: list[str]) -> bool:
    # runtime.Convert_Slice_string_To_bool
    if not values:
        return False
    return not (values[0] == "0" or values[0].casefold() == "false")


def go_field_selector_exact_name(selector: str) -> str | None:
    """fields.ParseSelector(selector).RequiresExactMatch("metadata.name"); None on parse error."""
    terms: list[str] = []
    start, in_slash = 0, False
    for i, c in enumerate(selector):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    if selector:
        terms.append(selector[start:])
    items: list[tuple[str, str, str]] = []
    for part in sorted(terms):
        if part == "":
            continue
        split = None
        for i in range(len(part)):
            for op in ("!=", "==", "="):
                if split is None and part[i:].startswith(op):
                    split = (part[:i], op, part[i + len(op) :])
            if split is not None:
                break
        if split is None:
            return None
        lhs, op, rhs = split
        value, slash = "", False
        for c in rhs:
            if slash:
                if c not in "\\,=":
                    return None
                value += c
                slash = False
            elif c == "\\":
                slash = True
            elif c in ",=":
                return None
            else:
                value += c
        if slash:
            return None
        items.append((lhs, op, value))
    for lhs, op, value in items:
        if op in ("=", "==") and lhs == "metadata.name":
            return value
    return ""


def go_is_valid_path_segment_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name


def go_new_request_info(method: str, path: str, query: dict[str, list[str]]) -> GoRequestInfo:
    info = GoRequestInfo(is_resource_request=False, path=path, verb=method.lower())
    current = go_split_path(path)
    if len(current) < 3:
        return info
    if current[0] not in API_PREFIXES:
        return info
    info.api_prefix = current[0]
    current = current[1:]
    if info.api_prefix not in GROUPLESS_API_PREFIXES:
        if len(current) < 3:
            return info
        info.api_group = current[0]
        current = current[1:]
    info.is_resource_request = True
    info.api_version = current[0]
    current = current[1:]
    if current[0] in SPECIAL_VERBS:
        if len(current) < 2:
            raise OracleError("unable to determine kind and namespace from url")
        info.verb = current[0]
        current = current[1:]
    else:
        info.verb = {
            "POST": "create",
            "GET": "get",
            "HEAD": "get",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "")
    if current[0] == "namespaces" and len(current) > 1:
        info.namespace = current[1]
        if len(current) > 2 and current[2] not in NAMESPACE_SUBRESOURCES:
            current = current[2:]
    info.parts = current
    if len(info.parts) >= 3 and info.verb not in SPECIAL_VERBS_NO_SUBRESOURCES:
        info.subresource = info.parts[2]
    if len(info.parts) >= 2:
        info.name = info.parts[1]
    if len(info.parts) >= 1:
        info.resource = info.parts[0]
    if info.name == "" and info.verb == "get":
        info.verb = "watch" if go_bool(query.get("watch", [])) else "list"
        if "fieldSelector" in query:
            name = go_field_selector_exact_name(query["fieldSelector"][0])
            if name and go_is_valid_path_segment_name(name):
                info.name = name
    if info.name == "" and info.verb == "delete":
        info.verb = "deletecollection"
    return info


# ---- what the proxy adds on top of the oracle ----------------------------------------------

CONNECT = {"exec", "attach", "portforward", "proxy"}


def expected_verb(go: GoRequestInfo) -> str | None:
    """The proxy's verb for Go's answer; None where the proxy refuses the request."""
    if not go.is_resource_request:
        return go.verb
    if go.verb == "proxy" or (go.subresource in CONNECT and go.verb not in SPECIAL_VERBS):
        return "connect"
    return go.verb or None


# ---- generated requests -----------------------------------------------------------------------

WORDS = [
    "api", "apis", "v1", "v1beta1", "apps", "storage.k8s.io", "watch", "proxy", "namespaces",
    "status", "finalize", "exec", "attach", "portforward", "log", "scale", "pods", "nodes",
    "persistentvolumes", "team-a", "x", "node-1:10250", "a.b", "~user", "@x",
]  # fmt: skip
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-.:_~@!$&'()*+,="
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

names = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
segments = st.one_of(st.sampled_from(WORDS), names)


def encode_some(segment: str, mask: list[bool]) -> str:
    """Percent-encode the characters `mask` selects (never making an ambiguity)."""
    return "".join(
        f"%{ord(c):02X}" if pick and c not in "./" else c
        for c, pick in zip(segment, mask + [False] * len(segment), strict=False)
    )


@st.composite
def raw_paths(draw: st.DrawFn) -> tuple[str, str]:
    """(raw path, the path Go sees after decoding)."""
    prefix = draw(st.sampled_from([["api", "v1"], ["apis", "apps", "v1"], ["apis"], ["api"], []]))
    rest = draw(st.lists(segments, max_size=7))
    parts = prefix + rest
    raw = [encode_some(p, draw(st.lists(st.booleans(), max_size=len(p)))) for p in parts]
    add_slash: bool = draw(st.booleans())
    trailing = "/" if parts and add_slash else ""
    return "/" + "/".join(raw) + trailing, "/" + "/".join(parts) + trailing


FIELD_SELECTORS = [
    "metadata.name=foo", "metadata.name==foo", "metadata.name!=foo", "status.phase=Running",
    "status.phase=Running,metadata.name=bar", "metadata.name=a\\,b", "metadata.name=x/y",
    "metadata.name=..", "metadata.name=", "metadata.name=a=b", "metadata.name=a\\q", "garbage",
    "", ",", "metadata.name=zz,metadata.name=aa", "spec.nodeName=n1",
]  # fmt: skip
WATCH_VALUES = ["", "0", "1", "true", "TRUE", "True", "false", "FALSE", "fAlSe", "yes", "no", "f"]


@st.composite
def raw_queries(draw: st.DrawFn) -> str:
    params: list[tuple[str, str]] = []
    if draw(st.booleans()):
        params.append(("watch", draw(st.sampled_from(WATCH_VALUES))))
    if draw(st.booleans()):
        params.append(("fieldSelector", draw(st.sampled_from(FIELD_SELECTORS))))
    if draw(st.booleans()):
        params.append(("labelSelector", "tenant in (a,b),!missing"))
    params += draw(st.lists(st.tuples(st.sampled_from(["watch", "x", "limit"]), st.just("1"))))
    params = draw(st.permutations(params))
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


def go_query(raw_query: str) -> dict[str, list[str]]:
    return parse_qs(raw_query, keep_blank_values=True)


@settings(max_examples=600, deadline=None)
@given(method=st.sampled_from(METHODS), path=raw_paths(), query=raw_queries())
@example(method="GET", path=("/api/v1/watch/namespaces", "/api/v1/watch/namespaces"), query="")
@example(method="GET", path=("/api/v1/namespaces/ns", "/api/v1/namespaces/ns"), query="")
@example(method="DELETE", path=("/api/v1/nodes", "/api/v1/nodes"), query="")
@example(method="GET", path=("/api/v1/watch", "/api/v1/watch"), query="")
def test_classify_agrees_with_requestinfo_go(
    method: str, path: tuple[str, str], query: str
) -> None:
    raw_path, go_path = path
    try:
        go = go_new_request_info(method, go_path, go_query(query))
    except OracleError:
        with pytest.raises(ApiError) as refused:
            classify(method, raw_path, query)
        assert refused.value.code == 400
        return
    verb = expected_verb(go)
    if verb is None:
        with pytest.raises(ApiError) as refused:
            classify(method, raw_path, query)
        assert refused.value.code == 405
        return
    info = classify(method, raw_path, query)
    assert info.path == raw_path
    assert info.verb == verb
    assert info.is_resource == go.is_resource_request
    assert (info.api_prefix, info.api_group, info.api_version) == (
        go.api_prefix,
        go.api_group,
        go.api_version,
    )
    assert (info.namespace, info.resource, info.subresource, info.name) == (
        go.namespace,
        go.resource,
        go.subresource,
        go.name,
    )
    assert list(info.parts) == go.parts


# ---- the oracle itself, checked on the cases requestinfo_test.go lists -------------------------

# method path | verb prefix group version namespace resource subresource name ("-" = empty)
UPSTREAM_TABLE = """
GET /api/v1/namespaces | list api - v1 - namespaces - -
GET /api/v1/namespaces/other | get api - v1 other namespaces - other
GET /api/v1/namespaces/other/pods | list api - v1 other pods - -
GET /api/v1/namespaces/other/pods/foo | get api - v1 other pods - foo
HEAD /api/v1/namespaces/other/pods/foo | get api - v1 other pods - foo
GET /api/v1/pods | list api - v1 - pods - -
GET /api/v1/proxy/minions/127.0.0.1:10250 | proxy api - v1 - minions - 127.0.0.1:10250
GET /api/v1/watch/pods | watch api - v1 - pods - -
GET /api/v1/watch/namespaces/other/pods | watch api - v1 other pods - -
GET /apis/extensions/v1beta1/namespaces/other/pods | list apis extensions v1beta1 other pods - -
GET /api/v1/namespaces/other/pods/foo/status | get api - v1 other pods status foo
PUT /api/v1/namespaces/other/finalize | update api - v1 other namespaces finalize other
PUT /api/v1/namespaces/other/status | update api - v1 other namespaces status other
POST /api/v1/namespaces/other/pods | create api - v1 other pods - -
PUT /api/v1/namespaces/other/pods/foo | update api - v1 other pods - foo
DELETE /api/v1/namespaces/other/pods/foo | delete api - v1 other pods - foo
DELETE /api/v1/namespaces/other/pods | deletecollection api - v1 other pods - -
POST /apis/extensions/v1beta1/namespaces/other/pods | create apis extensions v1beta1 other pods - -
"""


@pytest.mark.parametrize("row", UPSTREAM_TABLE.strip().splitlines())
def test_oracle_reproduces_the_upstream_table(row: str) -> None:
    request, expected = row.split(" | ")
    method, path = request.split()
    go = go_new_request_info(method, path, {})
    got = [go.verb, go.api_prefix, go.api_group, go.api_version, go.namespace]
    got += [go.resource, go.subresource, go.name]
    assert [value or "-" for value in got] == expected.split()
