"""What one watch sends for one timeline entry: entries and judges in, client events out. Pure.

Like kube-apiserver's cacheWatcher (cache_watcher.go, convertToWatchEvent), a watch keeps no
copy of what its client holds: whether the client has an object follows from the object's
state and the tenancy in force, so each entry is judged on both sides. An object change is
ADDED when the object enters the caller's view, MODIFIED while it stays, DELETED when it
leaves (with the state the client last saw, stamped with the resourceVersion of the change, as
the cacher sends a selector transition). A tenancy change turns into ADDED / DELETED for every
object whose side it flips; which objects flip for a pair of views is computed once per entry
and shared by every watch with the same views.

Objects are judged on their projections (`Stored.view`); what a watch sends is decoded once per
entry (kept in its memo, shared by every watch that sends it), never for a judgement alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from tenant_proxy.filtering.objects import ObjectTest, everything, passes
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.watchcache.timeline import Change, Entry, Obj

Whole = Mapping[str, Any]
"""A decoded object, as a client receives it."""

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Out:
    """One event for the client: `obj` as held, its resourceVersion replaced by `stamp`."""

    type: str
    obj: Whole
    stamp: int | None = None


class Side(NamedTuple):
    """How a caller's view judges a resource: `rules` (hashable, equal rules judge alike) and
    the compiled test. A caller in no tenant has no side (None): it sees nothing."""

    rules: Hashable
    owns: ObjectTest


def side_of(view: TenantView | None, gr: GroupResource) -> Side | None:
    """How `view` judges `gr`; None when the caller sees nothing of it. One Side per view and
    resource, shared by every caller of the view: what watches derive from a pair of sides
    is shared by identity (`Entry.memo`)."""
    if view is None or gr not in view.rules:
        return None
    key = ("side", gr)
    found: Side | None = view.derived.get(key)
    if found is None:
        found = view.derived[key] = Side(view.rules[gr], view.owns(gr))
    return found


def judged_on(obj: Obj | Whole) -> Whole:
    """What tenancy judges: a kept object's projection; a decoded object itself."""
    return obj.view if isinstance(obj, Obj) else obj


def whole(obj: Obj | Whole) -> Whole:
    """The whole object: a kept one decoded; a decoded one itself."""
    return obj.decoded() if isinstance(obj, Obj) else obj


def visible(
    side: Side | None,
    selected: ObjectTest,
    obj: Obj | Whole | None,
    read: Callable[[Any], Whole] = whole,
) -> bool:
    """Whether a client with this side and selectors has `obj`: its side judges the projection,
    its own selectors (field selectors read any field) what `read` gives (the whole object)."""
    if obj is None or side is None or not passes(side.owns, judged_on(obj)):
        return False
    return selected is everything or selected(read(obj))


def moved(before: Side | None, after: Side | None) -> bool:
    """Whether going from `before` to `after` can change what a client sees."""
    if before is None or after is None:
        return before is not after
    return before is not after and before.rules != after.rules


def initial(state: Mapping[str, Obj], side: Side | None, selected: ObjectTest) -> list[Out]:
    """ADDED for everything the client sees in `state`, in name order (a list's order)."""
    if side is None:
        return []
    out = []
    for key in sorted(state):
        if passes(side.owns, state[key].view):
            obj = state[key].decoded()
            if selected(obj):
                out.append(Out(ADDED, obj))
    return out


def catch_up(
    held_state: Mapping[str, Obj],
    held_side: Side | None,
    state: Mapping[str, Obj],
    side: Side | None,
    selected: ObjectTest,
    rv: int,
) -> list[Out]:
    """The events that take a client from what it holds (`held_state` as `held_side` judges
    it) straight to what it may see now (`state` as `side` judges it), naming nothing else:
    what it may no longer see DELETED as it held it (stamped `rv`), what it did not hold ADDED,
    what changed MODIFIED, each in name order.

    For a watch resumed across a change of the caller's own tenancy: replaying the window entry
    by entry would show what it could see only meanwhile (a PV bound into its namespace, then
    the namespace given to another tenant), which a list at that old version would hide."""
    held = {k for k, obj in held_state.items() if visible(held_side, selected, obj)}
    seen = {k for k, obj in state.items() if visible(side, selected, obj)}
    out = [Out(DELETED, held_state[k].decoded(), rv) for k in sorted(held - seen)]
    for key in sorted(seen):
        obj = state[key]
        if key not in held:
            out.append(Out(ADDED, obj.decoded()))
        elif obj.rv != held_state[key].rv:
            out.append(Out(MODIFIED, obj.decoded()))
    return out


def view_moved(sides: Iterable[Side | None], at: Side | None) -> bool:
    """Whether any of `sides` judges otherwise than `at` (equal rules judge alike)."""
    rules = None if at is None else at.rules
    return any((None if s is None else s.rules) != rules for s in sides)


def events_for(
    entry: Entry[T],
    before: Side | None,
    after: Side | None,
    selected: ObjectTest,
    state_before: Callable[[], Mapping[str, Obj]],
) -> list[Out]:
    """The client's events for `entry`, judged with `before` (tenancy in force before it) and
    `after` (after it: the same side unless the entry moved tenancy). `state_before` gives
    the objects as they stood before the entry; it is read only when the rules moved."""
    out: list[Out] = []
    body = entry.body
    if moved(before, after):
        skip = body.key if isinstance(body, Change) else None
        for obj, now in _flips(entry, before, after, state_before, skip):
            if selected(obj):
                out.append(Out(ADDED, obj) if now else Out(DELETED, obj, entry.order.rv))
    if isinstance(body, Change):

        def read(obj: Obj) -> Whole:
            return _decoded(entry, obj)

        was = visible(before, selected, body.prev, read)
        now = visible(after, selected, body.cur, read)
        if was and now:
            assert body.cur is not None
            out.append(Out(MODIFIED, read(body.cur)))
        elif now:
            assert body.cur is not None
            out.append(Out(ADDED, read(body.cur)))
        elif was:
            assert body.prev is not None
            out.append(Out(DELETED, read(body.prev), body.rv))
    return out


def _decoded(entry: Entry[T], obj: Obj) -> Whole:
    """`obj` (the entry's own prev or cur) decoded once for every watch replaying the entry:
    they share its encoded lines too, which are keyed by the decoded object's identity."""
    key = ("decoded", id(obj))
    found: Whole | None = entry.memo.get(key)
    if found is None:
        found = entry.memo[key] = obj.decoded()
    return found


def _flips(
    entry: Entry[T],
    before: Side | None,
    after: Side | None,
    state_before: Callable[[], Mapping[str, Obj]],
    skip: str | None,
) -> list[tuple[Whole, bool]]:
    """Objects (but `skip`) whose side the move from `before` to `after` flips, with their new
    side; memoised on the entry: every watch with these rules shares one computation (and
    one decoding of each object)."""
    memo_key = (
        before.rules if before is not None else None,
        after.rules if after is not None else None,
    )
    found: list[tuple[Whole, bool]] | None = entry.memo.get(memo_key)
    if found is None:
        found = [(o.decoded(), now) for o, now in flipped(state_before(), before, after, skip)]
        entry.memo[memo_key] = found
    return found


def flipped(
    state: Mapping[str, Obj], before: Side | None, after: Side | None, skip: str | None = None
) -> Iterable[tuple[Obj, bool]]:
    """(object, visible now) for each object of `state` whose visibility differs."""
    for key in sorted(state):
        if key == skip:
            continue
        obj = state[key]
        was = before is not None and passes(before.owns, obj.view)
        now = after is not None and passes(after.owns, obj.view)
        if was != now:
            yield obj, now


def stamped(obj: Whole, rv: int | None) -> dict[str, Any]:
    """`obj` with its resourceVersion replaced (a shallow copy; the stored object is shared)."""
    copy = dict(obj)
    if rv is not None:
        meta = dict(copy.get("metadata") or {})
        meta["resourceVersion"] = str(rv)
        copy["metadata"] = meta
    return copy
