"""Resource quantities (`250m`, `8Gi`, `1e3`) as apimachinery's resource.Quantity reads and
writes them. Pure.

Only what the emulator's kubelets need: parsing capacities and requests, and the canonical
form a quantity serialises to (metrics-server's usage figures are written that way: `250m`,
`136343669n`, `2Gi`, `1598644Ki`).
"""

from __future__ import annotations

import re
from decimal import Decimal

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|([a-zA-Z]*))$")


def parse(text: str) -> Decimal | None:
    """The value of a quantity string, or None when apimachinery would refuse it."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        return None
    number, exponent, suffix = match.groups()
    value = Decimal(number)
    try:
        if exponent:
            return value.scaleb(int(exponent[1:]))
        if suffix in _BINARY:
            return value * Decimal(1024) ** _BINARY[suffix]
        if suffix in _DECIMAL:
            return value.scaleb(_DECIMAL[suffix])
    except ArithmeticError:  # beyond what a Decimal holds
        return None
    return None


def decimal_si(nano_units: int) -> str:
    """`NewScaledQuantity(n, -9)` in canonical form: the largest SI suffix that keeps it whole.

    1000000000 nanocores is `1`, 250000000 is `250m`, 136343669 stays `136343669n`.
    """
    if nano_units == 0:
        return "0"
    suffixes = sorted(_DECIMAL.items(), key=lambda item: item[1])
    mantissa, suffix = nano_units, "n"
    for name, exponent in suffixes[1:]:
        step = 10 ** (exponent - _DECIMAL[suffix])
        if mantissa % step:
            break
        mantissa, suffix = mantissa // step, name
    return f"{mantissa}{suffix}"


def binary_si(value: int) -> str:
    """`NewQuantity(bytes, BinarySI)` in canonical form: the largest power of 1024 that keeps it
    whole (2147483648 is `2Gi`, 1636851712 is `1598488Ki`, 1536 stays `1536`).

    Below 1024 apimachinery writes decimal SI instead (1000 is `1k`), to avoid rounding.
    """
    if -1024 < value < 1024:
        return decimal_si(value * 10**9)
    mantissa, suffix = value, ""
    for name in _BINARY:
        if mantissa % 1024:
            break
        mantissa, suffix = mantissa // 1024, name
    return f"{mantissa}{suffix}"
