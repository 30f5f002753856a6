"""The pager of a rewritten list: which upstream pages to read for one tenant's page. Pure.

Sans-I/O, like `watch.LineFramer` and `WatchFilter`: `start()` names the first upstream page to
read, `feed(page, following)` takes each page read (split by `pages.Splitting`) and names the
next one to read, or answers the tenant's page. The executor (`serving/filtered_list.py`) only
moves bytes between the API server and the pager, and seals the resume position.

The tenant's `limit` is honoured across upstream pages with positions (`continuation`): a page
ends wherever the limit is reached, usually inside an upstream page, and the next one starts
there, in the same snapshot. The share held is bounded (`max_bytes`): past it the client must
ask in pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tenant_proxy import status
from tenant_proxy.filtering import continuation
from tenant_proxy.filtering.continuation import Position
from tenant_proxy.filtering.objects import ObjectTest
from tenant_proxy.filtering.pages import Page, assemble, resume_position, take
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.requestinfo import Query


@dataclass(frozen=True)
class Read:
    """Read this upstream page next."""

    query: str
    following: str | None  # the upstream continue token it is asked with; None: a first page
    first: bool  # the first read of this request (its refusal is the API server's to give)


@dataclass(frozen=True)
class Answer:
    """The tenant's page: made of the upstream pages fed, resuming at `resume` (None: the end)."""

    first: Page
    entries: list[dict[str, Any]]
    withheld: int  # objects passed over that the tenant may not see
    resume: Position | None
    metadata_only: bool

    def body(self, continue_token: str | None) -> bytes:
        """The answer's bytes, with `continue_token` (the sealed `resume`) in its metadata."""
        return assemble(
            self.first,
            self.entries,
            metadata_only=self.metadata_only,
            continue_token=continue_token,
        )


@dataclass
class ListPager:
    """One tenant page of a list: `start()`, then `feed()` each upstream page read until it
    answers. `position`: where a continue token said the page starts (None: the first page)."""

    base: Query  # the upstream query of the list (selectors, includeObject, resourceVersion)
    owns: ObjectTest
    shape: Shape
    position: Position | None
    default_page: int  # upstream page size of a list that does not continue one
    want: int | None  # the client's limit
    max_bytes: int  # bound on the share held (raw bytes of the candidates judged)
    _fetched_with: str = field(default="", init=False)
    _skip: int = field(default=0, init=False)
    _first: Page | None = field(default=None, init=False)
    _entries: list[dict[str, Any]] = field(default_factory=list, init=False)
    _withheld: int = field(default=0, init=False)
    _held: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.position is not None:
            self._fetched_with, self._skip = self.position.upstream, self.position.skip

    @property
    def page_size(self) -> int:
        """A continued list keeps counting in the page size its positions were made with."""
        return self.position.page if self.position is not None else self.default_page

    @property
    def reads_ahead(self) -> bool:
        """Whether to ask for a following page before this one is judged: not for a limited
        read's first page, which may well be enough (the API server's work would be wasted)."""
        return self.want is None or self._first is not None

    def start(self) -> Read:
        position = self.position
        if position is None:
            return Read(page_query(self.base, self.page_size), None, first=True)
        if position.upstream:
            return Read(self.read_of(position.upstream).query, position.upstream, first=True)
        # Inside the first upstream page: read that very snapshot again.
        query = page_query(self.base, self.page_size, snapshot=position.resource_version)
        return Read(query, None, first=True)

    def read_of(self, following: str) -> Read:
        """The read of the upstream page that `following` (a page's continue token) names."""
        return Read(page_query(self.base, self.page_size, following=following), following, False)

    def feed(self, page: Page, following: str | None) -> Read | Answer:
        """Take the tenant's share of `page` (whose continue token is `following`)."""
        self._first = first = self._first or page
        want = None if self.want is None else self.want - len(self._entries)
        taken = take(
            page,
            self.owns,
            skip=self._skip,
            want=want,
            strip_objects=self.shape.strip_objects,
            metadata_only=self.shape.partial,
        )
        self._held += sum(len(raw) for _, raw in page.candidates)
        if self._held > self.max_bytes:
            # Bounded like an upstream page: a share this large must be asked in pages.
            raise status.internal_error(
                "the list is larger than the proxy answers at once; ask for it in pages (limit)"
            )
        self._entries += taken.entries
        self._withheld += taken.judged - len(taken.entries)
        resume = resume_position(
            page,
            taken,
            fetched_with=self._fetched_with,
            following=following,
            limit_reached=self.want is not None and len(self._entries) >= self.want,
            snapshot=first.resource_version,
            page_size=self.page_size,
        )
        if resume is not None or following is None:
            return Answer(first, self._entries, self._withheld, resume, self.shape.partial)
        self._fetched_with, self._skip = following, 0
        return self.read_of(following)

    def refused(self, read: Read, code: int) -> status.ApiError | None:
        """The answer to an upstream refusal of `read`; None: relay the API server's own.

        A following page's errors are the proxy's to word: the API server's 410 would carry a
        continue token naming another tenant's object. So is a continued list's 410 (its
        snapshot is gone): the client re-lists, as from the API server's own expired token."""
        if code == 410 and (not read.first or self.position is not None):
            return continue_expired()
        if read.first:
            return None
        return status.bad_gateway(f"the API server failed a page of the list ({code})")


def page_query(
    base: Query, page_size: int, *, following: str | None = None, snapshot: str | None = None
) -> str:
    """The upstream query for one page: the first (the client's own resourceVersion), a
    following one (the API server refuses a resourceVersion beside continue), or the first
    again at the snapshot a token recorded."""
    changes: dict[str, str | None] = {"limit": str(page_size), "continue": following}
    if following is not None:
        changes.update(resourceVersion=None, resourceVersionMatch=None)
    elif snapshot is not None:
        changes.update(resourceVersion=snapshot, resourceVersionMatch="Exact")
    return base.with_params(changes)


def list_binding(user: str, groups: tuple[str, ...], path: str, base: Query, shape: Shape) -> bytes:
    """What a token continues: this caller's list with these selectors and shape, nothing else."""
    return continuation.binding(
        user,
        *groups,
        path,
        base.label_selector or "",
        base.field_selector or "",
        shape.accept,
        base.include_object or "",
    )


def continue_expired() -> status.ApiError:
    return status.expired(
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter."
    )
