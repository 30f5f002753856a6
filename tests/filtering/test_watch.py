"""Framing watch streams: lines out of any chunking, bounded in length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.kube.lines import LineFramer, LineTooLong


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.lists(st.integers(1, 20), min_size=1, max_size=10),
)
def test_line_framer_yields_the_lines_whatever_the_chunking(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    framer, out, i, k = LineFramer(max_line=64), [], 0, 0
    while i < len(stream):
        out += framer.feed(stream[i : i + cuts[k % len(cuts)]])
        i += cuts[k % len(cuts)]
        k += 1
    assert out == [line for line in lines if line.strip()]


def test_line_framer_refuses_a_line_over_the_limit_even_without_newline() -> None:
    framer = LineFramer(max_line=10)
    assert framer.feed(b"0123456789") == []
    with pytest.raises(LineTooLong):
        framer.feed(b"x")
    with pytest.raises(LineTooLong):
        LineFramer(max_line=10).feed(b"short\n" + b"y" * 11 + b"\nz")
