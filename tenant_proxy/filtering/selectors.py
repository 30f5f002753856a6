"""Kubernetes label selectors: parse, match, serialise, combine.

A port of k8s.io/apimachinery/pkg/labels (selector.go, lexer and parser) so that what the proxy
accepts, and how it combines a client's selector with a tenant's, is exactly what the API server
would accept. Selectors are re-serialised from their parsed form before they go upstream: gluing
strings together would let a crafted client selector swallow the tenant's requirement.
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


_SET_OPS = frozenset({Op.IN, Op.NOT_IN})
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
        if self.op in _SET_OPS:
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
    if op in _SET_OPS and not vals:
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


# --- lexer ------------------------------------------------------------------------------------

_IDENT = "IDENT"
_END = "END"
_ERROR = "ERROR"
_SYMBOLS = {
    ")": ")",
    ",": ",",
    "!": "!",
    "==": "==",
    "=": "=",
    ">": ">",
    "<": "<",
    "!=": "!=",
    "(": "(",
}
_KEYWORDS = {"in": "in", "notin": "notin"}
_SPECIAL = frozenset("=!(),<>")
_WHITESPACE = frozenset(" \t\r\n")

Token = tuple[str, str]


def _lex(text: str) -> list[Token]:
    """Tokens as kube's Lexer yields them; a NUL ends the input as it does in Go."""
    text = text.split("\x00", 1)[0]
    tokens: list[Token] = []
    i = 0
    while True:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i == len(text):
            tokens.append((_END, ""))
            return tokens
        if text[i] in _SPECIAL:
            token, i = _lex_symbol(text, i)
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
                j += 1
            word = text[i:j]
            token, i = (_KEYWORDS.get(word, _IDENT), word), j
        tokens.append(token)
        if token[0] == _ERROR:
            tokens.append((_END, ""))
            return tokens


def _lex_symbol(text: str, i: int) -> tuple[Token, int]:
    # The longest run of special characters that is still a known symbol (scanSpecialSymbol).
    best: Token | None = None
    end = i
    j = i
    while j < len(text) and text[j] in _SPECIAL:
        candidate = text[i : j + 1]
        if candidate in _SYMBOLS:
            best, end = (_SYMBOLS[candidate], candidate), j + 1
        elif best is not None:
            break
        j += 1
    if best is None:
        return (_ERROR, f"error expected: keyword found '{text[i:j]}'"), j
    return best, end


# --- parser -----------------------------------------------------------------------------------

_OPERATORS = {
    "in": Op.IN,
    "=": Op.EQUALS,
    "==": Op.DOUBLE_EQUALS,
    ">": Op.GREATER_THAN,
    "<": Op.LESS_THAN,
    "notin": Op.NOT_IN,
    "!=": Op.NOT_EQUALS,
}


class _Parser:
    """labels.Parser: tokens looked at in a context; in values, `in`/`notin` are identifiers."""

    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> Token:
        return self._as(self.tokens[self.pos], values)

    def take(self, values: bool = True) -> Token:
        token = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return self._as(token, values)

    @staticmethod
    def _as(token: Token, values: bool) -> Token:
        if values and token[0] in _KEYWORDS:
            return (_IDENT, token[1])
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, lit = self.peek()
            if kind == _END:
                return requirements
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            requirements.append(self.requirement())
            kind, lit = self.take()
            if kind == _END:
                return requirements
            if kind != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            kind, lit = self.peek()
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        key, op = self.key_and_inferred_operator()
        if op is not None:
            return new_requirement(key, op, ())
        op = self.operator()
        values = self.set_values() if op in _SET_OPS else self.exact_value()
        return new_requirement(key, op, values)

    def key_and_inferred_operator(self) -> tuple[str, Op | None]:
        op: Op | None = None
        kind, lit = self.take()
        if kind == "!":
            op = Op.DOES_NOT_EXIST
            kind, lit = self.take()
        if kind != _IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        validate_key(lit)
        if op is None and self.peek()[0] in (_END, ","):
            op = Op.EXISTS
        return lit, op

    def operator(self) -> Op:
        kind, lit = self.take(values=False)
        if kind not in _OPERATORS:
            raise SelectorError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        return _OPERATORS[kind]

    def exact_value(self) -> set[str]:
        if self.peek()[0] in (_END, ","):
            return {""}
        kind, lit = self.take()
        if kind != _IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        return {lit}

    def set_values(self) -> set[str]:
        kind, lit = self.take()
        if kind != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, lit = self.peek()
        if kind == ")":
            self.take()
            return {""}
        if kind not in (_IDENT, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self.identifiers()
        kind, lit = self.take()
        if kind != ")":
            raise SelectorError(f"found '{lit}', expected: ')'")
        return values

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            kind, lit = self.take()
            if kind == _IDENT:
                values.add(lit)
                kind2, lit2 = self.peek()
                if kind2 == ",":
                    continue
                if kind2 == ")":
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if kind != ",":
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")
            # "(," ",)" and ",," each stand for the empty value, as in kube.
            if not values:
                values.add("")
            kind2 = self.peek()[0]
            if kind2 == ")":
                values.add("")
                return values
            if kind2 == ",":
                self.take()
                values.add("")


def parse_selector(text: str) -> Selector:
    """labels.Parse. Raises SelectorError with kube's wording for anything it refuses."""
    try:
        return selector_of(_Parser(text).parse())
    except SelectorError as err:
        raise SelectorError(f"unable to parse requirement: {err}") from None


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
