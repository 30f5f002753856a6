"""Late entries and where a client resumes (`Timeline.start_after`), and whether a tenancy
change is recorded (`Timeline.retarget`), on the timeline itself (found by review h21; the
clients' side is tests/e2e/test_watch_late_entries.py and test_watch_quiet_reload.py).

The timeline's rule: "a client that holds resourceVersion N has seen every entry up to (N, 0),
so it resumes at the first entry ordered after (N, 0): an entry that came late is sent again
rather than missed". Late entries make N name several points; a watch from N starts at the
earliest point any client was given N (a list, a bookmark, an event): a duplicate, never a miss.
"""

from __future__ import annotations

from tenant_proxy.watchcache.stored import Stored
from tenant_proxy.watchcache.timeline import Timeline


def pv(name: str, rv: int) -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}}


def test_a_version_handed_out_before_a_late_entry_resumes_before_it() -> None:
    timeline: Timeline[str] = Timeline({}, 70, "tenancy 1")
    timeline.change("pv-a", pv("pv-a", 71), 71)
    first = timeline.end
    assert timeline.hand_out(first) == 71  # client A lists here
    late = timeline.retarget("tenancy 2", cause_rv=71)  # a reload: not past the head
    assert late is not None
    assert late.order == (71, 1)
    assert timeline.hand_out(timeline.end) == 71  # client B lists after it
    # A holds 71 too, and has not seen the late entry.
    assert timeline.start_after(71) <= late.seq


def test_a_version_handed_out_after_a_late_entry_alone_resumes_after_it() -> None:
    """What `_handed` is for (holds): without an earlier holder, B does not get the entry
    again."""
    timeline: Timeline[str] = Timeline({}, 70, "tenancy 1")
    timeline.change("pv-a", pv("pv-a", 71), 71)
    late = timeline.retarget("tenancy 2", cause_rv=71)
    assert late is not None
    assert timeline.hand_out(timeline.end) == 71
    assert timeline.start_after(71) == timeline.end


def test_a_tenancy_change_after_the_list_is_recorded_on_a_quiet_timeline() -> None:
    timeline: Timeline[str] = Timeline({"gold": Stored.of(pv("gold", 5))}, 70, "tenancy 1")
    watching_from = timeline.end  # a watch opened after the list, judging with tenancy 1
    assert timeline.tenancy_at(watching_from) == "tenancy 1"
    # A config reload: no API event, so no version of its own (the index says None).
    entry = timeline.retarget("tenancy 2", cause_rv=None)
    assert entry is not None
    assert [e.tenancy_after for e in timeline.entries_from(watching_from)] == ["tenancy 2"]


def test_an_api_change_after_the_list_is_recorded_though_bookmarks_moved_the_head() -> None:
    timeline: Timeline[str] = Timeline({"gold": Stored.of(pv("gold", 5))}, 70, "tenancy 1")
    timeline.progress(90)  # a bookmark: the resource's stream is at 90, nothing changed
    entry = timeline.retarget("tenancy 2", cause_rv=80)  # after the list (70), before 90
    assert entry is not None
    assert entry.order == (90, 1)


def test_an_api_change_from_before_the_list_is_the_lists_own_tenancy() -> None:
    # Start-up: informers list at about one moment; a namespace event the PV list already
    # stands after is folded into the timeline's base, not sent to anyone.
    timeline: Timeline[str] = Timeline({"gold": Stored.of(pv("gold", 5))}, 70, "tenancy 1")
    assert timeline.retarget("tenancy 2", cause_rv=70) is None
    assert timeline.tenancy_at(timeline.end) == "tenancy 2"


def test_an_event_given_before_a_late_entry_counts_as_given_there() -> None:
    """An informer resumes from the version of the last event it got: an event sent before a
    late entry, and a list given the same version after it, resume before the entry."""
    timeline: Timeline[str] = Timeline({}, 70, "tenancy 1")
    entry = timeline.change("pv-a", pv("pv-a", 71), 71)
    assert entry is not None
    timeline.gave(71, entry.seq + 1)  # a watch sent pv-a's event
    late = timeline.retarget("tenancy 2", cause_rv=None)
    assert late is not None
    assert timeline.hand_out(timeline.end) == 71
    assert timeline.start_after(71) == late.seq


def test_notes_of_versions_without_late_entries_are_not_kept() -> None:
    """Bookmarks move a quiet head on for ever: what was given at each old head is dropped
    when no late entry makes it ambiguous."""
    timeline: Timeline[str] = Timeline({}, 70, "tenancy 1")
    for rv in range(71, 1071):
        timeline.progress(rv)
        timeline.hand_out(timeline.end)
    assert len(timeline._handed) == 1
