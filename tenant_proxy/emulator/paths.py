"""kube-apiserver's RequestInfo rules: what a method, raw path and query ask for.

Pure: `parse` follows k8s.io/apiserver/pkg/endpoints/request/requestinfo.go, including the
legacy `/api/v1/watch/...` paths and the list-by-`metadata.name` field selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from tenant_proxy.emulator.types import Attributes

_API_PREFIXES = ("api", "apis")
_SPECIAL_VERBS = ("proxy", "watch")
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def split_path(raw_path: str) -> list[str]:
    """Path segments of a raw path (query dropped), each percent-decoded after splitting."""
    path = raw_path.split("?", 1)[0]
    return [unquote(p) for p in path.strip("/").split("/") if p != ""]


def _non_resource(method: str, raw_path: str) -> Attributes:
    path = raw_path.split("?", 1)[0] or "/"
    return Attributes(verb=method.lower(), path=unquote(path), resource_request=False)


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


def exact_name(field_selector: str) -> str:
    """The name a `metadata.name=X` field selector pins, or "" if it pins none."""
    for term in field_selector.split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not key.endswith("!"):
                name = value.strip()
                return name if name and name not in (".", "..") and "/" not in name else ""
    return ""


def parse(method: str, raw_path: str, query: Mapping[str, str]) -> Attributes:
    """The request's Attributes; non-resource unless it is under /api/<v> or /apis/<g>/<v>."""
    parts = split_path(raw_path)
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return _non_resource(method, raw_path)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return _non_resource(method, raw_path)
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in _SPECIAL_VERBS:
        verb, parts = parts[0], parts[1:]
        if not parts:
            return _non_resource(method, raw_path)
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if _is_true(query.get("watch")) else "list"
        name = exact_name(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        verb=verb,
        path=unquote(raw_path.split("?", 1)[0]),
        resource_request=True,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )
