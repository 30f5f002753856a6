"""The list pager, driven with plain values against a simulated API server.

Properties, for any list (objects the tenant may or may not see), any upstream page size (or
an upstream that ignores `limit` and answers whole, as from its watch cache), any client
`limit`: following the resume positions page after page, the client gets exactly the objects
it may see, in order, never more than its limit on one page, and every other object counted
withheld exactly once; every upstream read is one the API server accepts (no resourceVersion
beside a continue token, a re-read of the first page pinned to its snapshot). An expired
snapshot or page is a 410 the client re-lists from; a fresh list's refusal is the API
server's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy import status
from tenant_proxy.filtering.continuation import Position
from tenant_proxy.filtering.pager import Answer, ListPager, Read
from tenant_proxy.filtering.pages import Page, Splitting, upstream_continue
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.requestinfo import parse_query

JSON = Shape(
    "application/json", table=False, partial=False, include_object=None, strip_objects=False
)
PARTIAL = Shape(
    "application/json", table=False, partial=True, include_object=None, strip_objects=False
)
FIELDS = frozenset({("metadata", "labels")})
SNAPSHOT = "41"


def keep(obj: Mapping[str, Any]) -> bool:
    return (obj["metadata"].get("labels") or {}).get("tenant") == "mine"


@dataclass
class ApiServer:
    """Pages of one list, as kube-apiserver answers `limit` and `continue` (the continue token
    here is the offset of the page it names), or whole when it ignores `limit`."""

    objects: list[dict[str, Any]]
    honours_limit: bool
    reads: int = 0

    def answer(self, query: str) -> bytes:
        self.reads += 1
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        following = params.get("continue")
        if following is not None:
            # The API server refuses a resourceVersion beside a continue token.
            assert "resourceVersion" not in params
            assert "resourceVersionMatch" not in params
            start = int(following)
        else:
            start = 0
        limit = int(params["limit"])
        assert limit > 0
        end = start + limit if self.honours_limit else len(self.objects)
        meta: dict[str, Any] = {"resourceVersion": SNAPSHOT}
        if end < len(self.objects):
            meta["continue"] = str(end)
        items = self.objects[start:end]
        return orjson.dumps({"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items})


def split(body: bytes) -> Page:
    splitting = Splitting(body, keep, FIELDS)
    while not splitting.step(2):
        pass
    return splitting.page


def one_page(
    api: ApiServer, position: Position | None, want: int | None, size: int, shape: Shape
) -> tuple[Answer, list[Read]]:
    """One client request: the pager driven until it answers, and the reads it asked."""
    base = parse_query("labelSelector=x%3Dy")
    pager = ListPager(base, keep, shape, position, size, want, max_bytes=1 << 30)
    read: Read | Answer = pager.start()
    reads: list[Read] = []
    while isinstance(read, Read):
        reads.append(read)
        body = api.answer(read.query)
        read = pager.feed(split(body), upstream_continue(body))
    return read, reads


objects = st.lists(st.booleans(), max_size=24).map(
    lambda mine: [
        {
            "metadata": {
                "name": f"o{i:02}",
                "labels": {"tenant": "mine" if m else "other"},
            }
        }
        for i, m in enumerate(mine)
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    world=objects,
    size=st.integers(1, 8),
    want=st.none() | st.integers(1, 6),
    honours_limit=st.booleans(),
    partial=st.booleans(),
)
def test_pages_followed_to_the_end_answer_exactly_the_tenants_objects(
    world: list[dict[str, Any]], size: int, want: int | None, honours_limit: bool, partial: bool
) -> None:
    api = ApiServer(world, honours_limit)
    shape = PARTIAL if partial else JSON
    position: Position | None = None
    got: list[str] = []
    withheld = 0
    for _ in range(len(world) + 2):
        answer, reads = one_page(api, position, want, size, shape)
        assert reads[0].first
        assert not any(r.first for r in reads[1:])
        if position is not None and not position.upstream:
            # Inside the first page: the same snapshot again, never a newer list.
            assert f"resourceVersion={SNAPSHOT}" in reads[0].query
            assert "resourceVersionMatch=Exact" in reads[0].query
        doc = orjson.loads(answer.body("sealed" if answer.resume else None))
        assert doc["metadata"]["resourceVersion"] == SNAPSHOT
        assert ("continue" in doc["metadata"]) == (answer.resume is not None)
        if partial:
            assert all(item["kind"] == "PartialObjectMetadata" for item in doc["items"])
            assert doc["kind"] == "PartialObjectMetadataList"
        else:
            assert all(item in world for item in doc["items"])  # whole, as the API server's
        names = [item["metadata"]["name"] for item in doc["items"]]
        if answer.resume is not None:
            assert want is not None
            assert len(names) == want
            assert answer.resume.page == size
        assert want is None or len(names) <= want
        got += names
        withheld += answer.withheld
        position = answer.resume
        if position is None:
            break
    else:
        pytest.fail("the pages did not end")
    assert got == [o["metadata"]["name"] for o in world if keep(o)]
    assert withheld == sum(not keep(o) for o in world)


@given(world=objects, size=st.integers(1, 8))
def test_an_unlimited_list_is_one_answer_read_in_upstream_pages(
    world: list[dict[str, Any]], size: int
) -> None:
    api = ApiServer(world, honours_limit=True)
    answer, reads = one_page(api, None, None, size, JSON)
    assert answer.resume is None
    assert len(reads) == max(1, -(-len(world) // size))
    assert [r.following for r in reads] == [None, *(str(size * i) for i in range(1, len(reads)))]


def test_a_limited_first_page_does_not_read_ahead_an_unlimited_one_does() -> None:
    base = parse_query("")
    limited = ListPager(base, keep, JSON, None, 5, want=1, max_bytes=1 << 20)
    unlimited = ListPager(base, keep, JSON, None, 5, want=None, max_bytes=1 << 20)
    assert not limited.reads_ahead
    assert unlimited.reads_ahead
    world = [{"metadata": {"name": f"o{i}", "labels": {"tenant": "other"}}} for i in range(10)]
    body = ApiServer(world, honours_limit=True).answer(limited.start().query)
    step = limited.feed(split(body), upstream_continue(body))
    assert isinstance(step, Read)
    assert step.following == "5"
    assert not step.first
    assert limited.reads_ahead  # once a page was not enough, the next is asked early


def test_a_continued_page_is_read_in_the_page_size_of_its_position() -> None:
    position = Position("10", 3, SNAPSHOT, page=7)
    pager = ListPager(parse_query("limit=2"), keep, JSON, position, 500, 2, 1 << 20)
    read = pager.start()
    params = parse_qs(read.query)
    assert params["limit"] == ["7"]
    assert params["continue"] == ["10"]
    assert read.following == "10"
    assert read.first


@given(
    position=st.none()
    | st.sampled_from([Position("", 2, SNAPSHOT, 3), Position("3", 1, SNAPSHOT, 3)]),
    code=st.sampled_from([403, 404, 410, 429, 500, 503]),
)
def test_refusals_a_first_read_relays_the_api_servers_unless_a_continued_list_expired(
    position: Position | None, code: int
) -> None:
    pager = ListPager(parse_query(""), keep, JSON, position, 3, 1, 1 << 20)
    refusal = pager.refused(pager.start(), code)
    if code == 410 and position is not None:
        assert refusal is not None
        assert (refusal.code, refusal.reason) == (410, "Expired")
    else:
        assert refusal is None  # relayed as the API server answered it


@given(code=st.sampled_from([403, 404, 410, 429, 500, 503]))
def test_refusals_of_a_following_page_are_the_proxys_own(code: int) -> None:
    """The API server's 410 would carry a token naming another tenant's object."""
    pager = ListPager(parse_query(""), keep, JSON, None, 3, None, 1 << 20)
    refusal = pager.refused(pager.read_of("bmFtZXMtYW5vdGhlcg"), code)
    assert refusal is not None
    assert (refusal.code, refusal.reason) == (
        (410, "Expired") if code == 410 else (502, "InternalError")
    )
    assert "bmFtZXMtYW5vdGhlcg" not in refusal.message


def test_a_share_larger_than_the_bound_must_be_asked_in_pages() -> None:
    world = [{"metadata": {"name": f"o{i}", "labels": {"tenant": "mine"}}} for i in range(4)]
    api = ApiServer(world, honours_limit=True)
    body = api.answer("limit=2")
    page = split(body)
    held = sum(len(raw) for _, raw in page.candidates)
    pager = ListPager(parse_query(""), keep, JSON, None, 2, None, max_bytes=held * 2 - 1)
    step = pager.feed(page, upstream_continue(body))
    assert isinstance(step, Read)
    body = api.answer(step.query)
    with pytest.raises(status.ApiError) as raised:
        pager.feed(split(body), upstream_continue(body))
    assert raised.value.code == 500
    assert "limit" in raised.value.message
