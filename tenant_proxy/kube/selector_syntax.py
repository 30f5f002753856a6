"""The label selector string syntax: kube's lexer and parser (k8s.io/apimachinery/pkg/labels,
selector.go), with its error wording, so that what the proxy accepts is what the API server
would accept."""

from __future__ import annotations

from tenant_proxy.kube.labels import (
    SET_OPS,
    Op,
    Requirement,
    Selector,
    SelectorError,
    new_requirement,
    selector_of,
    validate_key,
)

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
        values = self.set_values() if op in SET_OPS else self.exact_value()
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
