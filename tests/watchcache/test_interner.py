"""Projections kept compact (the informer's `Interner`): whatever a projection holds, it is
equal to what it was; equal parts of different objects are one dict; names stay their own."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.informers.informer import Interner

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
projections = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {
                "name": st.text(min_size=1, max_size=6),
                "labels": st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
            }
        )
    },
    optional={"spec": values, "status": values},
)


@given(st.lists(projections, max_size=6))
def test_interned_projections_are_equal_to_what_they_were(made: list[dict[str, Any]]) -> None:
    interner = Interner()
    before = copy.deepcopy(made)
    assert [interner(p) for p in made] == before


def pv(name: str, zone: str, namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"topology.example.com/zone": zone}},
        "spec": {"claimRef": {"namespace": namespace}},
    }


def test_equal_parts_of_different_objects_are_held_once() -> None:
    interner = Interner()
    a, b, c = (interner(pv(n, "z1", "team-a")) for n in ("pv-a", "pv-b", "pv-c"))
    other = interner(pv("pv-d", "z2", "team-b"))
    assert a["metadata"]["labels"] is b["metadata"]["labels"] is c["metadata"]["labels"]
    assert a["spec"] is b["spec"] is c["spec"]
    assert other["spec"] is not a["spec"]
    assert other["metadata"]["labels"] is not a["metadata"]["labels"]
    assert a["metadata"] is not b["metadata"]  # each holds its own name
    assert other == pv("pv-d", "z2", "team-b")
