"""What a request asks for, read from its raw path and query as kube-apiserver reads them.

`classify` follows k8s.io/apiserver/pkg/endpoints/request/requestinfo.go, so the proxy and the
API server agree on every request the proxy forwards. Where the two could disagree (encoded
slashes, dot segments, doubled slashes, `;` in the query, repeated selectors) the request is
refused with 400 instead: the proxy only forwards what it understood exactly. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote_to_bytes

from tenant_proxy.status import bad_request, method_not_allowed

__all__ = ["CONNECT_SUBRESOURCES", "Query", "RequestInfo", "classify", "parse_query"]

API_PREFIXES = frozenset({"api", "apis"})
GROUPLESS_PREFIXES = frozenset({"api"})
SPECIAL_VERBS = frozenset({"proxy", "watch"})
SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
SINGLE_VALUED = frozenset({"labelSelector", "fieldSelector"})

# RFC 3986 pchar without `%` (escapes are checked on their own); anything else is refused.
_RAW_SEGMENT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)
_INT64 = re.compile(r"[+-]?[0-9]+")
_FORBIDDEN_DECODED = re.compile(r"[/\\%\x00-\x1f\x7f]")
_INT64_RANGE = range(-(2**63), 2**63)


@dataclass(frozen=True)
class Query:
    """The query string, decoded as kube-apiserver decodes ListOptions.

    A repeated parameter counts by its first value, as url.Values.Get does. `raw` is the query
    exactly as received; `pairs` are all (key, value) pairs, decoded, in order.
    """

    raw: str = ""
    pairs: tuple[tuple[str, str], ...] = ()
    label_selector: str | None = None
    field_selector: str | None = None
    watch: bool = False
    resource_version: str | None = None
    resource_version_match: str | None = None
    limit: int | None = None
    continue_token: str | None = None
    timeout_seconds: int | None = None
    allow_watch_bookmarks: bool = False
    send_initial_events: bool | None = None
    include_object: str | None = None

    @property
    def exact_version(self) -> bool:
        """Whether the read asks for the state at exactly `resource_version`
        (`resourceVersionMatch=Exact` with a version other than unset and "0")."""
        return (
            self.resource_version not in (None, "", "0") and self.resource_version_match == "Exact"
        )

    def first(self, key: str) -> str | None:
        """The first value of `key`, or None when absent."""
        return _first(self.pairs, key)

    def with_params(self, changes: Mapping[str, str | None]) -> str:
        """A raw query with each parameter in `changes` set (None or "" removes it).

        Keys compare decoded, so an encoded spelling (`include%4Fbject`) is replaced too, and
        every repeat of a changed key goes: the API server would read only the first one.
        Unchanged chunks are kept byte for byte and in order; new keys come last.
        """
        pending = dict(changes)
        chunks = tuple(self.raw.split("&")) if self.raw else ()
        out: list[str] = []
        for chunk, (key, _) in zip(chunks, _chunk_keys(chunks), strict=True):
            if key not in changes:
                out.append(chunk)
            elif key in pending:
                value = pending.pop(key)
                if value:
                    out.append(_encode_param(key, value))
        out += [_encode_param(key, value) for key, value in pending.items() if value]
        return "&".join(out)


def _encode_param(key: str, value: str) -> str:
    return f"{quote(key, safe='')}={quote(value, safe='')}"


@dataclass(frozen=True)
class RequestInfo:
    """A request as kube-apiserver's RequestInfo describes it.

    `verb` is a Kubernetes verb for resource requests (get, list, watch, create, update, patch,
    delete, deletecollection, connect) and the lower-case HTTP method otherwise. As in
    requestinfo.go, a list or watch whose fieldSelector requires one `metadata.name` carries
    that `name`: decide get-versus-list on `verb`, never on `name`. `path` is the raw path.
    """

    verb: str
    is_resource: bool
    path: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()
    query: Query = field(default_factory=Query)


def classify(method: str, raw_path: str, raw_query: str) -> RequestInfo:
    """Classify one request; raises ApiError 400 (or 405) for what must not be forwarded."""
    query = parse_query(raw_query)
    segments = split_path(raw_path)
    non_resource = RequestInfo(verb=method.lower(), is_resource=False, path=raw_path, query=query)
    if len(segments) < 3 or segments[0] not in API_PREFIXES:
        return non_resource
    prefix, rest = segments[0], segments[1:]
    group = ""
    if prefix not in GROUPLESS_PREFIXES:
        if len(rest) < 3:
            # requestinfo.go has set APIPrefix by then: `/apis/apps/v1` is discovery under "apis".
            return replace(non_resource, api_prefix=prefix)
        group, rest = rest[0], rest[1:]
    return _resource_request(method, raw_path, query, prefix, group, rest)


def _resource_request(
    method: str, raw_path: str, query: Query, prefix: str, group: str, rest: tuple[str, ...]
) -> RequestInfo:
    version, parts = rest[0], rest[1:]
    verb = METHOD_VERBS.get(method, "")
    if parts[0] in SPECIAL_VERBS:
        if len(parts) < 2:
            raise bad_request(f"unable to determine kind and namespace from url {raw_path}")
        verb, parts = parts[0], parts[1:]
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    subresource = parts[2] if len(parts) >= 3 and verb not in SPECIAL_VERBS_NO_SUBRESOURCES else ""
    name = parts[1] if len(parts) >= 2 else ""
    verb, name = _refine_verb(verb, name, subresource, query)
    if not verb:
        raise method_not_allowed()
    return RequestInfo(
        verb=verb,
        is_resource=True,
        path=raw_path,
        api_prefix=prefix,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=parts[0],
        subresource=subresource,
        name=name,
        parts=parts,
        query=query,
    )


def _refine_verb(verb: str, name: str, subresource: str, query: Query) -> tuple[str, str]:
    """list/watch for a collection get, deletecollection, connect; and the fieldSelector name."""
    if subresource in CONNECT_SUBRESOURCES and verb not in SPECIAL_VERBS:
        # exec/attach/portforward/proxy take any method and become an upgrade or a byte stream.
        return "connect", name
    if verb == "proxy":
        return "connect", name
    if not name and verb == "get":
        verb = "watch" if query.watch else "list"
        name = _exact_name(query.field_selector)
    if not name and verb == "delete":
        verb = "deletecollection"
    return verb, name


def split_path(raw_path: str) -> tuple[str, ...]:
    """The decoded segments of `raw_path`; 400 when it is ambiguous or not a plain path."""
    if not raw_path.startswith("/") or "//" in raw_path:
        raise bad_request(f"invalid request path {raw_path!r}")
    trimmed = raw_path.strip("/")
    if not trimmed:
        return ()
    return tuple(_decode_segment(raw_path, raw) for raw in trimmed.split("/"))


def _decode_segment(raw_path: str, raw: str) -> str:
    if (
        not _RAW_SEGMENT.fullmatch(raw)
        or _BAD_ESCAPE.search(raw)
        or _ENCODED_DOT.search(raw)
        or raw in (".", "..")
    ):
        raise bad_request(f"ambiguous request path {raw_path!r}")
    if "%" not in raw:
        return raw
    decoded = _unescape(raw, plus_is_space=False)
    if decoded is None or _FORBIDDEN_DECODED.search(decoded):
        raise bad_request(f"ambiguous request path {raw_path!r}")
    return decoded


def _unescape(text: str, plus_is_space: bool) -> str | None:
    """Strict percent-decoding to UTF-8; None for a bad escape or bytes that are not UTF-8."""
    if _BAD_ESCAPE.search(text):
        return None
    if plus_is_space:
        text = text.replace("+", " ")
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _chunk_keys(chunks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each raw `key=value` chunk decoded, as Go's url.ParseQuery decodes it."""
    pairs = []
    for chunk in chunks:
        raw_key, _, raw_value = chunk.partition("=")
        key = _unescape(raw_key, plus_is_space=True)
        value = _unescape(raw_value, plus_is_space=True)
        if key is None or value is None:
            raise bad_request(f"invalid query parameter {chunk!r}")
        pairs.append((key, value))
    return pairs


def parse_query(raw_query: str) -> Query:
    """Decode a raw query string; 400 for `;`, bad escapes, repeated selectors, bad integers."""
    if ";" in raw_query:
        # Go >= 1.17 refuses `;` as a separator; other parsers split on it: never guess.
        raise bad_request("invalid query: semicolon separators are not allowed")
    chunks = tuple(chunk for chunk in raw_query.split("&") if chunk)
    pairs = tuple(_chunk_keys(chunks))
    for key in SINGLE_VALUED:
        if sum(1 for name, _ in pairs if name == key) > 1:
            raise bad_request(f"invalid query: {key} may be given only once")

    def first(key: str) -> str | None:
        return _first(pairs, key)

    return Query(
        raw=raw_query,
        pairs=pairs,
        label_selector=first("labelSelector"),
        field_selector=first("fieldSelector"),
        watch=_go_bool(first("watch")) is True,
        resource_version=first("resourceVersion"),
        resource_version_match=first("resourceVersionMatch"),
        limit=_go_int64("limit", first("limit")),
        continue_token=first("continue"),
        timeout_seconds=_go_int64("timeoutSeconds", first("timeoutSeconds")),
        allow_watch_bookmarks=_go_bool(first("allowWatchBookmarks")) is True,
        send_initial_events=_go_bool(first("sendInitialEvents")),
        include_object=first("includeObject"),
    )


def _first(pairs: tuple[tuple[str, str], ...], key: str) -> str | None:
    return next((value for name, value in pairs if name == key), None)


def _go_bool(value: str | None) -> bool | None:
    """apimachinery's Convert_Slice_string_To_bool: only "0" and "false" (any case) are false."""
    if value is None:
        return None
    return not (value == "0" or value.lower() == "false")


def _go_int64(key: str, value: str | None) -> int | None:
    """strconv.ParseInt(value, 10, 64), which Python's int() is laxer than."""
    if value is None:
        return None
    if not _INT64.fullmatch(value) or int(value) not in _INT64_RANGE:
        raise bad_request(f"invalid query: {key}={value!r} is not an integer")
    return int(value)


def _exact_name(field_selector: str | None) -> str:
    """The name a fieldSelector pins with metadata.name, as fields.RequiresExactMatch finds it.

    As in apimachinery, a selector that does not parse as a whole pins nothing.
    """
    if field_selector is None:
        return ""
    terms = []
    for term in sorted(_split_terms(field_selector)):
        if not term:
            continue
        parsed = _split_term(term)
        value = _unescape_selector_value(parsed[2]) if parsed else None
        if parsed is None or value is None:
            return ""
        terms.append((parsed[0], parsed[1], value))
    for lhs, op, value in terms:
        if lhs == "metadata.name" and op != "!=":
            return value if _valid_path_segment_name(value) else ""
    return ""


FieldTerm = tuple[tuple[str, ...], bool, str]
"""One fieldSelector term: the field's path, whether it must equal (else differ), the value."""


def field_terms(field_selector: str | None) -> tuple[FieldTerm, ...]:
    """A fieldSelector as fields.ParseSelector reads it; 400 when it does not parse."""
    terms: list[FieldTerm] = []
    for term in _split_terms(field_selector or ""):
        if not term:
            continue
        parsed = _split_term(term)
        value = _unescape_selector_value(parsed[2]) if parsed else None
        if parsed is None or value is None or not parsed[0]:
            raise bad_request(f"invalid field selector: {field_selector!r}")
        terms.append((tuple(parsed[0].strip().split(".")), parsed[1] != "!=", value))
    return tuple(terms)


def _split_terms(selector: str) -> list[str]:
    """Comma-separated terms; a backslash-escaped comma stays inside its term."""
    terms, start, escaped = [], 0, False
    for i, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _unescape_selector_value(value: str) -> str | None:
    out, escaped = [], False
    for char in value:
        if escaped:
            if char not in "\\,=":
                return None
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


def _valid_path_segment_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name
