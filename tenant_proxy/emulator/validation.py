"""Object name validation with the real server's messages (422 Invalid causes). Pure."""

from __future__ import annotations

import re

from tenant_proxy.emulator.errors import StatusError, invalid
from tenant_proxy.emulator.types import KubeObject, ResourceType

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)

# Resources whose names must be RFC 1123 labels / DNS-1035 labels / path segments;
# everything else is an RFC 1123 subdomain.
_LABEL_NAMED = {("", "namespaces")}
_DNS1035_NAMED = {("", "services")}
_SEGMENT_NAMED = {
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
}


def _cause(field: str, value: str, message: str) -> dict[str, str]:
    return {
        "reason": "FieldValueInvalid",
        "message": f'Invalid value: "{value}": {message}',
        "field": field,
    }


def name_problems(rt: ResourceType, name: str) -> list[str]:
    """Why `name` is not a valid name for `rt` (empty when it is valid)."""
    key = (rt.group, rt.plural)
    if key in _SEGMENT_NAMED:
        bad = name in (".", "..") or "/" in name or "%" in name
        return ['may not contain "/" or "%" and may not be "." or ".."'] if bad else []
    if key in _LABEL_NAMED:
        problems = [] if _LABEL.match(name) else [LABEL_MSG]
        return problems + (["must be no more than 63 characters"] if len(name) > 63 else [])
    if key in _DNS1035_NAMED:
        problems = [] if _DNS1035.match(name) else [DNS1035_MSG]
        return problems + (["must be no more than 63 characters"] if len(name) > 63 else [])
    problems = [] if _SUBDOMAIN.match(name) else [SUBDOMAIN_MSG]
    return problems + (["must be no more than 253 characters"] if len(name) > 253 else [])


def validate_name(rt: ResourceType, obj: KubeObject) -> None:
    """Raise 422 Invalid as the real server does for a missing or malformed metadata.name."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if not isinstance(name, str):
        raise invalid(rt.kind, str(name), [_cause("metadata.name", str(name), "must be a string")])
    if not name:
        raise invalid(
            rt.kind,
            "",
            [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: name or generateName is required",
                    "field": "metadata.name",
                }
            ],
        )
    problems = name_problems(rt, name)
    if problems:
        raise invalid(rt.kind, name, [_cause("metadata.name", name, p) for p in problems])


def validate_namespace_field(rt: ResourceType, obj: KubeObject, namespace: str) -> None:
    """The body's namespace, if set, must be the one in the URL (400 like the real server)."""
    meta = obj.get("metadata") or {}
    body_ns = meta.get("namespace") or ""
    if rt.namespaced and body_ns and body_ns != namespace:
        raise StatusError(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        )
