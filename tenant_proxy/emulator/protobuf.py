"""Decode the few protobuf request bodies kubectl sends (reviews and TokenRequest). Pure.

kubectl's typed clients POST `application/vnd.kubernetes.protobuf` for `auth whoami`,
`auth can-i` and `create token`. The emulator answers JSON (the clients also accept it) and
only needs to read these requests, so this is a schema-driven wire decoder for just those
messages, not a protobuf implementation.
"""

from __future__ import annotations

import base64
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

Schema = dict[int, tuple[str, Any]]
"""field number -> (JSON name, kind): kind is "string", "strings", "int", "bool", "map" (of
strings), "bytesmap" (values base64-encoded, as JSON carries bytes), a nested Schema, or
("messages", Schema) for a repeated message."""

_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
}
_RESOURCE_ATTRS: Schema = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
}
_NON_RESOURCE_ATTRS: Schema = {1: ("path", "string"), 2: ("verb", "string")}
_ACCESS_SPEC: Schema = {
    1: ("resourceAttributes", _RESOURCE_ATTRS),
    2: ("nonResourceAttributes", _NON_RESOURCE_ATTRS),
    3: ("user", "string"),
    4: ("groups", "strings"),
    6: ("uid", "string"),
}
_BOUND_OBJECT: Schema = {
    1: ("kind", "string"),
    2: ("apiVersion", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
}

_LABEL_SELECTOR: Schema = {
    1: ("matchLabels", "map"),
    2: (
        "matchExpressions",
        ("messages", {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "strings")}),
    ),
}
_POLICY_RULE: Schema = {
    1: ("verbs", "strings"),
    2: ("apiGroups", "strings"),
    3: ("resources", "strings"),
    4: ("resourceNames", "strings"),
    5: ("nonResourceURLs", "strings"),
}
_BINDING: Schema = {
    1: ("metadata", _META),
    2: (
        "subjects",
        (
            "messages",
            {
                1: ("kind", "string"),
                2: ("apiGroup", "string"),
                3: ("name", "string"),
                4: ("namespace", "string"),
            },
        ),
    ),
    3: ("roleRef", {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")}),
}

SCHEMAS: dict[str, Schema] = {
    # `kubectl create role|clusterrole|rolebinding|clusterrolebinding`
    "Role": {1: ("metadata", _META), 2: ("rules", ("messages", _POLICY_RULE))},
    "ClusterRole": {
        1: ("metadata", _META),
        2: ("rules", ("messages", _POLICY_RULE)),
        3: ("aggregationRule", {1: ("clusterRoleSelectors", ("messages", _LABEL_SELECTOR))}),
    },
    "RoleBinding": _BINDING,
    # `kubectl create priorityclass`
    "PriorityClass": {
        1: ("metadata", _META),
        2: ("value", "int"),
        3: ("globalDefault", "bool"),
        4: ("description", "string"),
        5: ("preemptionPolicy", "string"),
    },
    "ClusterRoleBinding": _BINDING,
    # what `kubectl create namespace|configmap|secret|serviceaccount` send
    "Namespace": {1: ("metadata", _META)},
    "ServiceAccount": {1: ("metadata", _META)},
    "ConfigMap": {1: ("metadata", _META), 2: ("data", "map"), 4: ("immutable", "bool")},
    "Secret": {
        1: ("metadata", _META),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        5: ("immutable", "bool"),
    },
    "SelfSubjectAccessReview": {1: ("metadata", _META), 2: ("spec", _ACCESS_SPEC)},
    "SubjectAccessReview": {1: ("metadata", _META), 2: ("spec", _ACCESS_SPEC)},
    "LocalSubjectAccessReview": {1: ("metadata", _META), 2: ("spec", _ACCESS_SPEC)},
    "SelfSubjectRulesReview": {1: ("metadata", _META), 2: ("spec", {1: ("namespace", "string")})},
    "SelfSubjectReview": {1: ("metadata", _META)},
    "TokenReview": {
        1: ("metadata", _META),
        2: ("spec", {1: ("token", "string"), 2: ("audiences", "strings")}),
    },
    "TokenRequest": {
        1: ("metadata", _META),
        2: (
            "spec",
            {
                1: ("audiences", "strings"),
                3: ("boundObjectRef", _BOUND_OBJECT),
                4: ("expirationSeconds", "int"),
            },
        ),
    },
}


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf envelope of a supported kind."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for number, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        payload = value if isinstance(value, bytes) else b""
        if isinstance(kind, dict):
            doc[name] = decode_message(payload, kind)
        elif isinstance(kind, tuple):
            doc.setdefault(name, []).append(decode_message(payload, kind[1]))
        elif kind in ("map", "bytesmap"):
            key, item = _entry(value, kind == "bytesmap")
            doc.setdefault(name, {})[key] = item
        elif kind == "strings":
            doc.setdefault(name, []).append(_text(value))
        elif kind == "string":
            doc[name] = _text(value)
        elif kind == "bool":
            doc[name] = bool(value)
        else:
            number_value = value if isinstance(value, int) else 0
            # Negative ints travel as 64-bit two's complement varints.
            doc[name] = number_value - (1 << 64) if number_value >= 1 << 63 else number_value
    # Go writes every non-pointer scalar; JSON omits the empty ones (omitempty).
    return {k: v for k, v in doc.items() if v not in ("", 0) or isinstance(v, bool)}


def _entry(value: int | bytes, as_bytes: bool) -> tuple[str, str]:
    """One map entry (key = 1, value = 2)."""
    entry = dict(fields(value if isinstance(value, bytes) else b""))
    raw = entry.get(2, b"")
    if as_bytes and isinstance(raw, bytes):
        return _text(entry.get(1, b"")), base64.b64encode(raw).decode("ascii")
    return _text(entry.get(1, b"")), _text(raw)


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a string field")
    return value.decode("utf-8", errors="replace")


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded request object of a supported kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic number")
    type_meta: dict[str, Any] = {}
    raw = b""
    for number, value in fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            type_meta = decode_message(value, {1: ("apiVersion", "string"), 2: ("kind", "string")})
        elif number == 2 and isinstance(value, bytes):
            raw = value
    kind = str(type_meta.get("kind", ""))
    if kind not in SCHEMAS:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported")
    return {**type_meta, **decode_message(raw, SCHEMAS[kind])}
