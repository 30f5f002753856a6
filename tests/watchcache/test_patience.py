"""How long consistent reads wait for the cache: the full budget while waiting pays, a check
only after waits keep failing, and a full wait again now and then."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.watchcache.patience import Patience

PVS, NAMESPACES = "persistentvolumes", "namespaces"


def test_waits_the_budget_until_three_full_waits_in_a_row_fail() -> None:
    p = Patience(0.25)
    for _ in range(3):
        assert p.wait_for(PVS) == 0.25
        p.caught_up(PVS, False, 0.25)
    assert p.wait_for(PVS) == 0.0
    assert p.wait_for(NAMESPACES) == 0.25  # per resource


def test_a_read_that_catches_up_restores_the_wait() -> None:
    p = Patience(0.25, misses=2)
    for _ in range(2):
        p.caught_up(PVS, False, p.wait_for(PVS))
    assert p.wait_for(PVS) == 0.0
    p.caught_up(PVS, True, 0.0)  # a check that found the cache already there
    assert p.wait_for(PVS) == 0.25


def test_a_check_that_finds_the_cache_behind_is_not_a_miss_nor_a_success() -> None:
    p = Patience(0.25, misses=1, retry_every=4)
    p.caught_up(PVS, False, p.wait_for(PVS))
    waits = []
    for _ in range(8):
        wait = p.wait_for(PVS)
        waits.append(wait)
        p.caught_up(PVS, False, wait)
    assert waits == [0.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.25]


@given(st.lists(st.booleans(), max_size=80))
def test_never_more_than_retry_every_reads_without_a_full_wait(outcomes: list[bool]) -> None:
    p = Patience(1.0, misses=3, retry_every=5)
    since_full = 0
    misses_in_a_row = 0
    for caught in outcomes:
        wait = p.wait_for(PVS)
        assert wait in (0.0, 1.0)
        if misses_in_a_row < 3:
            assert wait == 1.0  # waiting has not failed three times in a row: it still pays
        since_full = 0 if wait == 1.0 else since_full + 1
        assert since_full < 5
        p.caught_up(PVS, caught, wait)
        if caught:
            misses_in_a_row = 0
        elif wait == 1.0:
            misses_in_a_row += 1
