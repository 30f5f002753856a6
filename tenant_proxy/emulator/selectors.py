"""Label and field selectors: parse them as kube-apiserver does and match objects. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy.emulator.types import KubeObject


class SelectorError(ValueError):
    """A selector the server cannot parse or does not support (answered as 400 BadRequest)."""


@dataclass(frozen=True)
class Requirement:
    """One label requirement: `key <op> values`; op in =, !=, in, notin, exists, !, gt, lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key, "")
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        return has and _compare_int(value, self.values[0], self.op)


def _compare_int(value: str, bound: str, op: str) -> bool:
    try:
        return int(value) > int(bound) if op == "gt" else int(value) < int(bound)
    except ValueError:
        return False


LabelSelector = tuple[Requirement, ...]

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")
_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SelectorError(f"unable to parse requirement: unexpected text at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.toks[self.pos] if self.pos < len(self.toks) else ""

    def take(self) -> str:
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        while self.pos < len(self.toks):
            reqs.append(self.requirement())
            sep = self.take()
            if sep not in (",", ""):
                raise SelectorError(f"found '{sep}', expected: ',' or 'end of string'")
        return tuple(reqs)

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(_key(self.take()), "!")
        key = _key(self.take())
        op = self.peek()
        if op in ("", ","):
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "=="):
            return Requirement(key, "=", (self.value(),))
        if op == "!=":
            return Requirement(key, "!=", (self.value(),))
        if op in (">", "<"):
            bound = self.take()
            if not bound.lstrip("-").isdigit():
                raise SelectorError(f"unable to parse requirement: invalid integer value {bound!r}")
            return Requirement(key, "gt" if op == ">" else "lt", (bound,))
        if op in ("in", "notin"):
            return Requirement(key, op, self.value_set())
        raise SelectorError(
            f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt"
        )

    def value(self) -> str:
        tok = self.peek()
        if tok in ("", ","):
            return ""
        return _value(self.take())

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise SelectorError("unable to parse requirement: found '', expected: '('")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self.take()
            if tok == ")":
                return tuple(values)
            if tok == "," and not expect_value:
                expect_value = True
            elif expect_value and tok not in ("", ",", "("):
                values.append(_value(tok))
                expect_value = False
            else:
                raise SelectorError(
                    f"unable to parse requirement: found '{tok}', expected: ',', ')'"
                )


def _key(tok: str) -> str:
    if not _KEY.match(tok):
        raise SelectorError(
            f'unable to parse requirement: key: Invalid value: "{tok}": name part must consist '
            "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )
    return tok


def _value(tok: str) -> str:
    if not _VALUE.match(tok):
        raise SelectorError(
            f'unable to parse requirement: values[0][value]: Invalid value: "{tok}": a valid '
            "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return tok


def parse_labels(text: str) -> LabelSelector:
    """A label selector (`a=b,c in (d,e),!f`); raises SelectorError like the real parser."""
    return _LabelParser(text).parse() if text.strip() else ()


def labels_match(selector: LabelSelector, obj: KubeObject) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in selector)


# --- field selectors ---------------------------------------------------------------------------

FieldSelector = tuple[tuple[str, str, str], ...]
"""(field, op, value) terms; op is "=" or "!="."""


def _path(*keys: str) -> Callable[[KubeObject], str]:
    def get(obj: KubeObject) -> str:
        cur: Any = obj
        for k in keys:
            cur = cur.get(k) if isinstance(cur, dict) else None
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return "" if cur is None else str(cur)

    return get


def _bool_path(*keys: str) -> Callable[[KubeObject], str]:
    inner = _path(*keys)
    return lambda obj: inner(obj) or "false"


_EVENT_FIELDS = {
    f"involvedObject.{k}": _path("involvedObject", k)
    for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
} | {
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": _path("source", "component"),
    "type": _path("type"),
}

_RESOURCE_FIELDS: dict[tuple[str, str], dict[str, Callable[[KubeObject], str]]] = {
    ("", "pods"): {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    ("", "events"): _EVENT_FIELDS,
    ("", "secrets"): {"type": _path("type")},
    ("", "namespaces"): {"status.phase": _path("status", "phase")},
    ("", "nodes"): {"spec.unschedulable": _bool_path("spec", "unschedulable")},
    ("", "replicationcontrollers"): {"status.replicas": _path("status", "replicas")},
    ("apps", "replicasets"): {"status.replicas": _path("status", "replicas")},
    ("batch", "jobs"): {"status.successful": _path("status", "succeeded")},
    ("certificates.k8s.io", "certificatesigningrequests"): {
        "spec.signerName": _path("spec", "signerName")
    },
}


def supported_fields(
    group: str, plural: str, namespaced: bool
) -> dict[str, Callable[[KubeObject], str]]:
    """Field getters a resource supports in field selectors (metadata ones plus its own)."""
    fields: dict[str, Callable[[KubeObject], str]] = {"metadata.name": _path("metadata", "name")}
    if namespaced:
        fields["metadata.namespace"] = _path("metadata", "namespace")
    return fields | _RESOURCE_FIELDS.get((group, plural), {})


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            cur.append(ch)
            escaped = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _field_term(term: str) -> tuple[str, str, str]:
    for op, norm in (("!=", "!="), ("==", "="), ("=", "=")):
        idx = term.find(op)
        if idx > 0:
            return term[:idx].strip(), norm, _unescape(term[idx + len(op) :])
    raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")


def parse_fields(
    text: str, supported: Mapping[str, Callable[[KubeObject], str]] | None = None
) -> FieldSelector:
    """A field selector (`a=b,c!=d`); unsupported fields raise `field label not supported`."""
    if not text.strip():
        return ()
    terms = tuple(_field_term(t) for t in _split_unescaped(text, ",") if t.strip())
    if supported is not None:
        for field, _, _ in terms:
            if field not in supported:
                raise SelectorError(f"field label not supported: {field}")
    return terms


def fields_match(
    selector: FieldSelector, getters: Mapping[str, Callable[[KubeObject], str]], obj: KubeObject
) -> bool:
    for field, op, value in selector:
        actual = getters[field](obj) if field in getters else ""
        if (actual == value) != (op == "="):
            return False
    return True
