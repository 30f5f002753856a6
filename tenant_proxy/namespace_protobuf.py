"""A v1 Namespace sent as protobuf, read as the JSON object it stands for. Pure.

`kubectl create namespace` uses client-go's typed client, which POSTs
`application/vnd.kubernetes.protobuf` (k8s.io/api/core/v1/generated.proto). Self-service must
read the body to check it, and sends JSON upstream, so this decodes the few fields such a body
carries: the envelope (runtime.Unknown: magic `k8s\\0`, typeMeta, raw), the Namespace
(metadata, spec, status) and its ObjectMeta's name, generateName, namespace, uid,
resourceVersion, labels, annotations and finalizers. Another field (ownerReferences,
managedFields, ...) is refused as an unsupported body rather than silently dropped, unless it
is empty or zero (gogo-protobuf writes every non-pointer field): the client can send JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_META_STRINGS = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
_META_MAPS = {11: "labels", 12: "annotations"}
_CREATION_TIMESTAMP, _FINALIZERS = 8, 14


class Unreadable(ValueError):
    """Not a protobuf Namespace this decoder reads; the message says what."""


def decode_namespace(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded v1 Namespace. Raises Unreadable."""
    if not body.startswith(MAGIC):
        raise Unreadable("no protobuf envelope")
    envelope = dict(_single(body[len(MAGIC) :], "envelope"))
    type_meta = dict(_single(_bytes(envelope.get(1, b"")), "typeMeta"))
    api_version, kind = _text(type_meta.get(1, b"")), _text(type_meta.get(2, b""))
    if (api_version, kind) != ("v1", "Namespace"):
        raise Unreadable(f"a {api_version}/{kind}, not a v1 Namespace")
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version, "metadata": {}}
    for number, value in _fields(_bytes(envelope.get(2, b""))):
        if number == 1:
            obj["metadata"] = _object_meta(_bytes(value))
        elif number == 2:
            finalizers = [_text(v) for n, v in _fields(_bytes(value)) if n == 1]
            obj["spec"] = {"finalizers": finalizers} if finalizers else {}
        elif number != 3 and value:  # status: set by the API server on create
            raise Unreadable(f"Namespace field {number}")
    return obj


def _object_meta(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for number, value in _fields(data):
        if number in _META_STRINGS:
            if value:  # gogo-protobuf writes every string field, empty ones too
                meta[_META_STRINGS[number]] = _text(value)
        elif number in _META_MAPS:
            key, item = _map_entry(_bytes(value))
            meta.setdefault(_META_MAPS[number], {})[key] = item
        elif number == _FINALIZERS:
            meta.setdefault("finalizers", []).append(_text(value))
        elif number != _CREATION_TIMESTAMP and value:  # (set by the API server on create)
            raise Unreadable(f"ObjectMeta field {number}")
    return meta


def _map_entry(data: bytes) -> tuple[str, str]:
    entry = dict(_single(data, "map entry"))
    return _text(entry.get(1, b"")), _text(entry.get(2, b""))


def _single(data: bytes, what: str) -> Iterator[tuple[int, bytes | int]]:
    """Fields of a message whose fields each occur once (a repeat is malformed here)."""
    seen: set[int] = set()
    for number, value in _fields(data):
        if number in seen:
            raise Unreadable(f"{what}: field {number} repeated")
        seen.add(number)
        yield number, value


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) in wire order: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise Unreadable("field number 0")
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == _BYTES:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise Unreadable("truncated")
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(data):
                raise Unreadable("truncated")
            yield number, int.from_bytes(data[pos : pos + size], "little")
            pos += size
        else:
            raise Unreadable(f"wire type {wire}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Unreadable("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _bytes(value: bytes | int) -> bytes:
    if not isinstance(value, bytes):
        raise Unreadable("a number where a message or string belongs")
    return value


def _text(value: bytes | int) -> str:
    try:
        return _bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("a string that is not UTF-8") from None
