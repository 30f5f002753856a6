"""Kubernetes label selectors as values: match, serialise, combine, validate, and read a
metav1.LabelSelector (the string syntax is parsed in `selector_syntax`).

A port of k8s.io/apimachinery/pkg/labels (selector.go) so that what the proxy accepts, and how
it combines a client's selector with a tenant's, is exactly what the API server would accept.
Selectors are re-serialised from their parsed form before they go upstream: gluing strings
together would let a crafted client selector swallow the tenant's requirement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class SelectorError(ValueError):
    """A label selector (string or metav1.LabelSelector) the API server would refuse."""


class Op(Enum):
    """selection.Operator; the value is how the operator is written in a selector string."""

    EXISTS = ""
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = " in "
    NOT_IN = " notin "
    GREATER_THAN = ">"
    LESS_THAN = "<"


SET_OPS = frozenset({Op.IN, Op.NOT_IN})
_EXACT_OPS = frozenset({Op.EQUALS, Op.DOUBLE_EQUALS, Op.NOT_EQUALS, Op.GREATER_THAN, Op.LESS_THAN})


@dataclass(frozen=True)
class Requirement:
    """One `key op values` term. `values` is sorted and duplicate-free, as kube keeps it."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op is Op.EXISTS:
            return has
        if self.op is Op.DOES_NOT_EXIST:
            return not has
        if self.op in (Op.IN, Op.EQUALS, Op.DOUBLE_EQUALS):
            return has and labels[self.key] in self.values
        if self.op in (Op.NOT_IN, Op.NOT_EQUALS):
            return not has or labels[self.key] not in self.values
        return has and _compare(labels[self.key], self.op, self.values[0])

    def __str__(self) -> str:
        if self.op is Op.DOES_NOT_EXIST:
            return "!" + self.key
        if self.op is Op.EXISTS:
            return self.key
        if self.op in SET_OPS:
            return f"{self.key}{self.op.value}({','.join(self.values)})"
        return f"{self.key}{self.op.value}{self.values[0]}"


def _compare(label_value: str, op: Op, bound: str) -> bool:
    # kube parses both with strconv.ParseInt(.., 10, 64): a label that is not one never matches.
    have = _int64(label_value)
    if have is None:
        return False
    return have > int(bound) if op is Op.GREATER_THAN else have < int(bound)


def _int64(text: str) -> int | None:
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


_INT64 = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements, sorted by key as kube sorts them. Empty matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()


def selector_of(requirements: Iterable[Requirement]) -> Selector:
    """Sort requirements by key (stable, like kube's sort.Sort on ByKey for equal keys in order)."""
    return Selector(tuple(sorted(requirements, key=lambda r: r.key)))


def and_selectors(*selectors: Selector) -> Selector:
    """The selector matching exactly what every one of `selectors` matches."""
    return selector_of(r for s in selectors for r in s.requirements)


# --- validation (k8s.io/apimachinery/pkg/util/validation) -------------------------------------

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def validate_key(key: str) -> None:
    """IsQualifiedName: an optional DNS-subdomain prefix and `/`, then a name of ≤ 63 chars."""
    prefix, slash, name = key.rpartition("/")
    if slash and key.count("/") > 1:
        raise SelectorError(f"invalid label key {key!r}: at most one '/' allowed")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        raise SelectorError(f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        raise SelectorError(f"invalid label key {key!r}: name part must be a qualified name")


def validate_value(value: str) -> None:
    """IsValidLabelValue: empty, or ≤ 63 chars of alphanumerics, '-', '_', '.' (alnum at ends)."""
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise SelectorError(f"invalid label value: {value!r}")


def new_requirement(key: str, op: Op, values: Iterable[str]) -> Requirement:
    """labels.NewRequirement: validate and normalise (values sorted, duplicates removed)."""
    vals = tuple(sorted(set(values)))
    validate_key(key)
    if op in SET_OPS and not vals:
        raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
    if op in _EXACT_OPS and len(vals) != 1:
        raise SelectorError("exact-match compatibility requires one single value")
    if op in (Op.EXISTS, Op.DOES_NOT_EXIST) and vals:
        raise SelectorError("values set must be empty for exists and does not exist")
    if op in (Op.GREATER_THAN, Op.LESS_THAN) and _int64(vals[0]) is None:
        raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an integer: {vals[0]!r}")
    for value in vals:
        validate_value(value)
    return Requirement(key, op, vals)


# --- metav1.LabelSelector ---------------------------------------------------------------------

_EXPRESSION_OPS = {
    "In": Op.IN,
    "NotIn": Op.NOT_IN,
    "Exists": Op.EXISTS,
    "DoesNotExist": Op.DOES_NOT_EXIST,
}


def from_label_selector(spec: Mapping[str, Any]) -> Selector:
    """metav1.LabelSelectorAsSelector for a non-nil LabelSelector (`{}` matches everything)."""
    requirements = [
        new_requirement(_string(k), Op.EQUALS, (_string(v),))
        for k, v in _mapping(spec.get("matchLabels")).items()
    ]
    for expression in _list(spec.get("matchExpressions")):
        expr = _mapping(expression)
        op = _EXPRESSION_OPS.get(_string(expr.get("operator")))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        values = [_string(v) for v in _list(expr.get("values"))]
        requirements.append(new_requirement(_string(expr.get("key")), op, values))
    return selector_of(requirements)


def _mapping(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SelectorError(f"expected a mapping, got {type(value).__name__}")
    return value


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SelectorError(f"expected a list, got {type(value).__name__}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise SelectorError(f"expected a string, got {type(value).__name__}")
    return value
