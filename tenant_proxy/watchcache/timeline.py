"""One filtered resource as the proxy's watch cache holds it: the current objects and a bounded
window of recent entries, in the order the proxy learned them. Pure: no I/O, no clock.

This is kube-apiserver's watchCache (k8s.io/apiserver/pkg/storage/cacher/watch_cache.go) with
one addition: tenancy. What a tenant sees depends on the object *and* on tenancy (its
namespaces, its rules), which changes through other resources' events (a namespace relabelled,
a Tenant CR edited, a config reload). So the window holds two kinds of entry: an object
`Change`, and a `Retarget` (tenancy moved on; the snapshot in force from there). A change of a
tenancy input that is itself this resource (a namespace relabelled, for the namespaces
timeline) is one `Change` carrying its new tenancy, so the two happen at once, as a selector
transition does in the cacher.

Ordering. Entries are kept in the order they arrive; each has an `Order` (rv, sub). etcd
revisions are global, but each upstream watch stream is ordered on its own: an entry whose rv
is not above the head (a tenancy change that reached the proxy after a later change of this
resource, a config reload, a re-list's difference) is ordered just after the head, (head.rv,
head.sub + 1). A client that holds resourceVersion N has seen every entry up to (N, 0), so it
resumes at the first entry ordered after (N, 0): an entry that came late is sent again rather
than missed (a duplicate a client applies as an update, never a lost transition).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from tenant_proxy.watchcache.stored import Stored

Obj = Stored
"""An object as the API server sent it, kept as bytes and judged on its projection; never
changed once stored (shared by entries), but for a projection widened to new rules."""

T = TypeVar("T")


class Order(NamedTuple):
    rv: int
    sub: int


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """An object's state moved from `prev` to `cur` (None: absent) at resourceVersion `rv`.

    `tenancy`: the tenancy this very event put in force (a namespace relabelled), if any.
    """

    key: str
    prev: Obj | None
    cur: Obj | None
    rv: int
    tenancy: T | None = None


@dataclass(frozen=True, slots=True)
class Retarget(Generic[T]):
    """Tenancy moved on: `tenancy` is in force from here."""

    tenancy: T


@dataclass(slots=True)
class Entry(Generic[T]):
    seq: int
    order: Order
    body: Change[T] | Retarget[T]
    tenancy_after: T
    size: int
    memo: dict[Any, Any] = field(default_factory=dict)
    """Per-entry results shared by every watch that replays it (tenancy flips)."""


class TooOld(Exception):
    """The window no longer reaches back to that resourceVersion: the client must re-list."""

    def __init__(self, asked: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {asked} ({oldest})")
        self.asked, self.oldest = asked, oldest


class Timeline(Generic[T]):
    """Current objects (by name) and the last entries, bounded by count and by bytes."""

    def __init__(
        self,
        objects: dict[str, Obj],
        rv: int,
        tenancy: T,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.objects = objects
        self.tenancy = tenancy
        self._base_tenancy = tenancy
        self._entries: deque[Entry[T]] = deque()
        self._next_seq = 0
        # Everything up to `floor` is folded into the objects: no watch can start before it.
        self.floor = Order(rv, 0)
        self.head = self.floor
        # How far this resource's own upstream stream is known to have come (its events and
        # bookmarks): a tenancy change stamped with another stream's version says nothing of
        # this one's events still on their way.
        self.heard = rv
        self._bytes = 0
        self._max_entries, self._max_bytes = max_entries, max_bytes
        # Where clients were first given each version that late entries make ambiguous (the
        # head's, which late entries may follow, and any with late entries in the window): a
        # watch from it starts at the earliest such point, so none misses a late entry. Kept
        # by `gave`, from lists, bookmarks and the events watches send.
        self._handed: dict[int, int] = {}
        self._late: dict[int, int] = {}  # entries ordered behind each real version

    # -- writing -------------------------------------------------------------------------------
    def change(
        self,
        key: str,
        cur: Obj | Mapping[str, Any] | None,
        rv: int,
        size: int = 0,
        tenancy: T | None = None,
    ) -> Entry[T] | None:
        """Record `key`'s new state (None: deleted) at `rv`; None when nothing changed. A plain
        mapping is kept whole, judged on itself."""
        if cur is not None and not isinstance(cur, Stored):
            cur = Stored.of(cur)
        prev = self.objects.get(key)
        self.heard = max(self.heard, rv)
        if prev is None and cur is None and tenancy is None:
            return None
        if cur is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = cur
        if tenancy is not None:
            self.tenancy = tenancy
        return self._append(Change(key, prev, cur, rv, tenancy), rv, size)

    def retarget(self, tenancy: T, cause_rv: int | None = None, size: int = 0) -> Entry[T] | None:
        """Tenancy moved on, caused by an event at `cause_rv` (None: not an API event);
        `size`: what keeping that tenancy costs (it counts against the window's bytes)."""
        if tenancy is self.tenancy:
            return None
        self.tenancy = tenancy
        if self._next_seq == 0 and cause_rv is not None and cause_rv <= self.floor.rv:
            # Nothing recorded since the list this timeline started from, and the change is
            # from before it (informers list at one moment on start-up): tenancy as known at
            # that version is the list's own. The list's version, not the head: bookmarks move
            # the head on, and a change after the list must reach the watches opened since.
            self._base_tenancy = tenancy
            return None
        return self._append(Retarget(tenancy), cause_rv or 0, size)

    def replace_all(self, fresh: Mapping[str, Obj], rv: int, versions: Mapping[str, int]) -> int:
        """A re-list at `rv`: its difference from what is held, as changes; how many.

        `versions` gives each fresh object's resourceVersion (a deletion is stamped `rv`).
        """
        count = 0
        for key in sorted(self.objects.keys() - fresh.keys()):
            count += self.change(key, None, rv) is not None
        for key in sorted(fresh):
            held = self.objects.get(key)
            if held != fresh[key]:
                count += self.change(key, fresh[key], versions.get(key, rv)) is not None
            elif held is not None and held.view is not fresh[key].view:
                # The same object, projected anew (the index re-listed for a new rule field):
                # its new projection, shared with the index, replaces the old one.
                self.objects[key] = fresh[key]
        if Order(rv, 0) > self.head:
            self.head = Order(rv, 0)
        self.heard = max(self.heard, rv)
        return count

    def progress(self, rv: int) -> None:
        """The resource is known unchanged up to `rv` (a bookmark): later watches start there."""
        if rv > self.head.rv:
            self._head_moves()
            self.head = Order(rv, 0)
        self.heard = max(self.heard, rv)

    def _head_moves(self) -> None:
        # Without late entries, every client given the head's version stood at one point
        # (no entry came between): a watch from it starts there without a note.
        if self.head.rv not in self._late:
            self._handed.pop(self.head.rv, None)

    def _append(self, body: Change[T] | Retarget[T], rv: int, size: int) -> Entry[T]:
        head = self.head
        if rv > head.rv:
            order = Order(rv, 0)
            self._head_moves()
        else:
            order = Order(head.rv, head.sub + 1)
            self._late[head.rv] = self._late.get(head.rv, 0) + 1
        entry = Entry(self._next_seq, order, body, self.tenancy, size)
        self._next_seq += 1
        self._entries.append(entry)
        self.head = order
        self._bytes += size
        while self._entries and (
            len(self._entries) > self._max_entries or self._bytes > self._max_bytes
        ):
            old = self._entries.popleft()
            self._bytes -= old.size
            self.floor = old.order
            self._base_tenancy = old.tenancy_after
            self._handed.pop(old.order.rv, None)
            if old.order.sub:
                self._late[old.order.rv] -= 1
                if not self._late[old.order.rv]:
                    del self._late[old.order.rv]
        return entry

    # -- reading -------------------------------------------------------------------------------
    @property
    def end(self) -> int:
        """The seq the next entry will have: a watch at `end` has seen everything."""
        return self._next_seq

    @property
    def first_seq(self) -> int:
        return self._entries[0].seq if self._entries else self._next_seq

    def start_after(self, rv: int) -> int:
        """Where a client holding resourceVersion `rv` resumes: the first entry ordered after
        (rv, 0), or, when entries ordered behind `rv` came after it, the earliest point any
        client was given `rv` (one given it later gets those entries again: a duplicate,
        never a miss). TooOld when entries after it have left the window."""
        asked = Order(rv, 0)
        if asked < self.floor:
            raise TooOld(rv, self.floor.rv)
        # Entries are in non-decreasing order: the first one past `asked`, from the end
        # (clients resume near the head).
        seq = self._next_seq
        for entry in reversed(self._entries):
            if entry.order <= asked:
                break
            seq = entry.seq
        return max(seq, self._handed.get(rv, seq))

    def hand_out(self, seq: int) -> int:
        """The resourceVersion to give a client that has seen everything before `seq` (a list
        answered at `seq`, a bookmark), noted as given there."""
        rv = self.rv_before(seq)
        self.gave(rv, seq)
        return rv

    def gave(self, rv: int, seq: int) -> None:
        """A client was given `rv` having seen everything before `seq` (a list, a bookmark,
        an event). Late entries may make `rv` name several points: the earliest counts."""
        if rv == self.head.rv or rv in self._late:
            handed = self._handed.get(rv)
            if handed is None or seq < handed:
                self._handed[rv] = seq

    def entries_from(self, seq: int) -> Iterator[Entry[T]]:
        """The entries from `seq` on; TooOld when `seq` has left the window."""
        first = self.first_seq
        if seq < first:
            raise TooOld(0, self.floor.rv)
        for i in range(seq - first, len(self._entries)):
            yield self._entries[i]

    def tenancy_at(self, seq: int) -> T:
        """The tenancy in force just before entry `seq`."""
        first = self.first_seq
        if seq < first:
            raise TooOld(0, self.floor.rv)
        return self._entries[seq - first - 1].tenancy_after if seq > first else self._base_tenancy

    def held(self) -> Iterator[Obj]:
        """Every object kept (current states and the window's), each once."""
        seen: set[int] = set()
        for obj in self.objects.values():
            seen.add(id(obj))
            yield obj
        for entry in self._entries:
            body = entry.body
            if isinstance(body, Change):
                for state in (body.prev, body.cur):
                    if state is not None and id(state) not in seen:
                        seen.add(id(state))
                        yield state

    def state_at(self, seq: int) -> dict[str, Obj]:
        """The objects as they stood just before entry `seq` (a copy)."""
        first = self.first_seq
        if seq < first:
            raise TooOld(0, self.floor.rv)
        state = dict(self.objects)
        for i in range(len(self._entries) - 1, seq - first - 1, -1):
            body = self._entries[i].body
            if isinstance(body, Change):
                if body.prev is None:
                    state.pop(body.key, None)
                else:
                    state[body.key] = body.prev
        return state

    def rv_before(self, seq: int) -> int:
        """The resourceVersion a client that has seen everything before `seq` holds."""
        if seq >= self._next_seq:
            return self.head.rv
        first = self.first_seq
        if seq <= first:
            return self.floor.rv
        return self._entries[seq - first - 1].order.rv
