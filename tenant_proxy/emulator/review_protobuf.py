"""Protobuf answers to the access reviews kubectl asks (`auth can-i`, `auth can-i --list`). Pure.

kube-apiserver answers a SelfSubjectAccessReview or SelfSubjectRulesReview in protobuf when the
client accepts protobuf first, as kubectl ≥ 1.3x does (`selfsar-protobuf-alice-list-namespaces`,
`selfsrr-protobuf-alice`). The `protobuf` package would need the generated Kubernetes types, so
this is an explicit encoder for just these kinds, written from the recorded bytes and from
k8s.io/api's generated.proto: the `k8s\\0` magic, then a runtime.Unknown whose `raw` is the
object. Like the Go marshaller (gogo-protobuf, proto2), every field that is not a pointer is
written even when empty, fields go in ascending number order, and map entries by sorted key.
The server recorded is v1.24: its ObjectMeta still writes the deprecated clusterName (field 15).

`decode` reads such an answer back into its JSON form (empty values dropped as Go's JSON
`omitempty` drops them); `encode(decode(b)) == b` for the recorded answers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tenant_proxy.emulator.protobuf import MAGIC, MEDIA_TYPE, ProtobufError, fields

__all__ = ["KINDS", "MEDIA_TYPE", "decode", "encode"]

Scalar = Literal["string", "int", "bool", "time", "fieldsv1", "map"]


@dataclass(frozen=True)
class Field:
    """One field of a message: its number, JSON name and kind.

    `pointer`: a Go pointer, written only when the JSON holds it (and kept when decoded,
    however empty). `keep`: the JSON carries it even when empty (no `omitempty`).
    """

    number: int
    name: str
    kind: Scalar | tuple[Field, ...]
    repeated: bool = False
    pointer: bool = False
    keep: bool = False


Message = tuple[Field, ...]

_TYPE_META: Message = (Field(1, "apiVersion", "string"), Field(2, "kind", "string"))
_MANAGED_FIELDS_ENTRY: Message = (
    Field(1, "manager", "string"),
    Field(2, "operation", "string"),
    Field(3, "apiVersion", "string"),
    Field(4, "time", "time", pointer=True),
    Field(6, "fieldsType", "string"),
    Field(7, "fieldsV1", "fieldsv1", pointer=True),
    Field(8, "subresource", "string"),
)
_OBJECT_META: Message = (
    Field(1, "name", "string"),
    Field(2, "generateName", "string"),
    Field(3, "namespace", "string"),
    Field(4, "selfLink", "string"),
    Field(5, "uid", "string"),
    Field(6, "resourceVersion", "string"),
    Field(7, "generation", "int"),
    Field(8, "creationTimestamp", "time", keep=True),
    Field(9, "deletionTimestamp", "time", pointer=True),
    Field(10, "deletionGracePeriodSeconds", "int", pointer=True),
    Field(11, "labels", "map"),
    Field(12, "annotations", "map"),
    Field(14, "finalizers", "string", repeated=True),
    Field(15, "clusterName", "string"),
    Field(17, "managedFields", _MANAGED_FIELDS_ENTRY, repeated=True),
)
_RESOURCE_ATTRIBUTES: Message = (
    Field(1, "namespace", "string"),
    Field(2, "verb", "string"),
    Field(3, "group", "string"),
    Field(4, "version", "string"),
    Field(5, "resource", "string"),
    Field(6, "subresource", "string"),
    Field(7, "name", "string"),
)
_NON_RESOURCE_ATTRIBUTES: Message = (Field(1, "path", "string"), Field(2, "verb", "string"))
_SELF_SUBJECT_ACCESS_REVIEW: Message = (
    Field(1, "metadata", _OBJECT_META, keep=True),
    Field(
        2,
        "spec",
        (
            Field(1, "resourceAttributes", _RESOURCE_ATTRIBUTES, pointer=True),
            Field(2, "nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES, pointer=True),
        ),
        keep=True,
    ),
    Field(
        3,
        "status",
        (
            Field(1, "allowed", "bool", keep=True),
            Field(2, "reason", "string"),
            Field(3, "evaluationError", "string"),
            Field(4, "denied", "bool"),
        ),
        keep=True,
    ),
)
_RESOURCE_RULE: Message = (
    Field(1, "verbs", "string", repeated=True, keep=True),
    Field(2, "apiGroups", "string", repeated=True),
    Field(3, "resources", "string", repeated=True),
    Field(4, "resourceNames", "string", repeated=True),
)
_NON_RESOURCE_RULE: Message = (
    Field(1, "verbs", "string", repeated=True, keep=True),
    Field(2, "nonResourceURLs", "string", repeated=True),
)
_SELF_SUBJECT_RULES_REVIEW: Message = (
    Field(1, "metadata", _OBJECT_META, keep=True),
    Field(2, "spec", (Field(1, "namespace", "string"),), keep=True),
    Field(
        3,
        "status",
        (
            Field(1, "resourceRules", _RESOURCE_RULE, repeated=True, keep=True),
            Field(2, "nonResourceRules", _NON_RESOURCE_RULE, repeated=True, keep=True),
            Field(3, "incomplete", "bool", keep=True),
            Field(4, "evaluationError", "string"),
        ),
        keep=True,
    ),
)
KINDS: dict[str, Message] = {
    "SelfSubjectAccessReview": _SELF_SUBJECT_ACCESS_REVIEW,
    "SelfSubjectRulesReview": _SELF_SUBJECT_RULES_REVIEW,
}


# --- encoding -------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative ints travel as 64-bit two's complement
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _timestamp(value: Any) -> bytes:
    """metav1.Time: empty when zero (null), else seconds and nanos, both always written."""
    if not value:
        return b""
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    seconds = int(moment.timestamp())
    return _tag(1, 0) + _varint(seconds) + _tag(2, 0) + _varint(moment.microsecond * 1000)


def _encode_value(field: Field, value: Any) -> bytes:
    kind = field.kind
    if isinstance(kind, tuple):
        return _delimited(field.number, _encode_message(kind, value or {}))
    if kind == "string":
        return _delimited(field.number, str(value or "").encode())
    if kind in ("int", "bool"):
        return _tag(field.number, 0) + _varint(int(value or 0))
    if kind == "time":
        return _delimited(field.number, _timestamp(value))
    if kind == "fieldsv1":
        return _delimited(field.number, _delimited(1, orjson.dumps(value)))
    entries = sorted((value or {}).items())
    return b"".join(
        _delimited(field.number, _delimited(1, k.encode()) + _delimited(2, str(v).encode()))
        for k, v in entries
    )


def _encode_message(message: Message, doc: dict[str, Any]) -> bytes:
    out = bytearray()
    for field in message:
        value = doc.get(field.name)
        if field.pointer and value is None:
            continue
        if field.repeated:
            out += b"".join(_encode_value(field, item) for item in value or ())
        else:
            out += _encode_value(field, value)
    return bytes(out)


def encode(doc: dict[str, Any]) -> bytes:
    """The protobuf answer (magic + runtime.Unknown) for an object of one of `KINDS`."""
    kind = str(doc.get("kind", ""))
    if kind not in KINDS:
        raise ProtobufError(f"no protobuf encoding for kind {kind!r}")
    unknown = (
        _delimited(1, _encode_message(_TYPE_META, doc))
        + _delimited(2, _encode_message(KINDS[kind], doc))
        + _delimited(3, b"")  # contentEncoding
        + _delimited(4, b"")  # contentType
    )
    return MAGIC + unknown


# --- decoding -------------------------------------------------------------------------------


def _as_bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    return value


def _as_int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ProtobufError("expected a varint")
    return value - (1 << 64) if value >= 1 << 63 else value


def _rfc3339(payload: bytes) -> str | None:
    if not payload:
        return None
    parts = {n: _as_int(v) for n, v in fields(payload)}
    moment = dt.datetime.fromtimestamp(parts.get(1, 0), dt.UTC)
    moment += dt.timedelta(microseconds=parts.get(2, 0) // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{moment.microsecond:06d}Z" if moment.microsecond else "Z"
    )


def _decode_value(field: Field, value: int | bytes) -> Any:
    kind = field.kind
    if isinstance(kind, tuple):
        return _decode_message(kind, _as_bytes(value))
    if kind == "string":
        return _as_bytes(value).decode()
    if kind == "int":
        return _as_int(value)
    if kind == "bool":
        return bool(_as_int(value))
    if kind == "time":
        return _rfc3339(_as_bytes(value))
    if kind == "fieldsv1":
        raw = dict(fields(_as_bytes(value))).get(1, b"{}")
        return orjson.loads(_as_bytes(raw))
    entry = dict(fields(_as_bytes(value)))
    return (_as_bytes(entry.get(1, b"")).decode(), _as_bytes(entry.get(2, b"")).decode())


def _zero(field: Field) -> Any:
    """The JSON value of a field the bytes do not hold."""
    if field.repeated:
        return []
    if isinstance(field.kind, tuple):
        return _decode_message(field.kind, b"")
    return {"string": "", "int": 0, "bool": False, "map": {}}.get(field.kind)


def _empty(value: Any) -> bool:
    return value in ("", 0, False, None, [], {})


def _decode_message(message: Message, payload: bytes) -> dict[str, Any]:
    by_number = {field.number: field for field in message}
    doc: dict[str, Any] = {}
    for number, value in fields(payload):
        field = by_number.get(number)
        if field is None:
            continue
        item = _decode_value(field, value)
        if field.kind == "map":
            doc.setdefault(field.name, {})[item[0]] = item[1]
        elif field.repeated:
            doc.setdefault(field.name, []).append(item)
        else:
            doc[field.name] = item
    for field in message:
        if field.keep and field.name not in doc:
            doc[field.name] = _zero(field)
    return {
        field.name: doc[field.name]
        for field in message
        if field.name in doc and (field.keep or field.pointer or not _empty(doc[field.name]))
    }


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf answer of one of `KINDS`."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic number")
    envelope = dict(fields(body[len(MAGIC) :]))
    type_meta = _decode_message(_TYPE_META, _as_bytes(envelope.get(1, b"")))
    kind = str(type_meta.get("kind", ""))
    if kind not in KINDS:
        raise ProtobufError(f"no protobuf decoding for kind {kind!r}")
    return {**type_meta, **_decode_message(KINDS[kind], _as_bytes(envelope.get(2, b"")))}
