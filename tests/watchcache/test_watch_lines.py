"""The lines of a watch served from the cache (pure): one encoding per entry shared by every
watch, Table rows with their columns only in a watch's first Table, bookmarks in each form."""

from __future__ import annotations

from typing import Any

import orjson

from tenant_proxy import status
from tenant_proxy.watchcache.replay import Out
from tenant_proxy.watchcache.watch_lines import (
    bookmark_line,
    error_line,
    event_line,
    resource_version,
    table_line,
)

NS: dict[str, Any] = {
    "kind": "Namespace",
    "apiVersion": "v1",
    "metadata": {
        "name": "team-a-dev",
        "resourceVersion": "41",
        "creationTimestamp": "2026-12-01T00:00:00Z",
        "labels": {"tenant": "a"},
    },
    "spec": {"finalizers": ["kubernetes"]},
}
COLUMNS = [{"name": "Name", "type": "string"}, {"name": "Age", "type": "string"}]
DAY = 24 * 3600.0
CREATED = 1796083200.0  # 2026-12-01T00:00:00Z


def test_an_event_line_is_encoded_once_per_entry_and_shared() -> None:
    memo: dict[Any, Any] = {}
    first = event_line(Out("ADDED", NS), False, memo)
    assert event_line(Out("ADDED", NS), False, memo) is first
    assert orjson.loads(first) == {"type": "ADDED", "object": NS}
    assert first.endswith(b"\n")
    assert first.count(b"\n") == 1


def test_forms_and_stamps_are_told_apart_in_the_shared_encodings() -> None:
    memo: dict[Any, Any] = {}
    whole = orjson.loads(event_line(Out("DELETED", NS, 57), False, memo))
    meta = orjson.loads(event_line(Out("DELETED", NS, 57), True, memo))
    unstamped = orjson.loads(event_line(Out("DELETED", NS), False, memo))
    assert whole["object"]["metadata"]["resourceVersion"] == "57"
    assert whole["object"]["spec"] == NS["spec"]
    assert meta["object"]["kind"] == "PartialObjectMetadata"
    assert meta["object"]["metadata"]["resourceVersion"] == "57"
    assert "spec" not in meta["object"]
    assert unstamped["object"]["metadata"]["resourceVersion"] == "41"
    assert NS["metadata"]["resourceVersion"] == "41"  # the stored object is never changed


def test_a_table_line_carries_its_columns_only_when_first_and_ages_now() -> None:
    out = Out("MODIFIED", NS)
    line = dict(partial=False, strip_objects=False, now=CREATED + 3 * DAY)
    first = orjson.loads(table_line(out, ["team-a-dev", "?"], COLUMNS, first=True, **line))
    later = orjson.loads(table_line(out, ["team-a-dev", "?"], COLUMNS, first=False, **line))
    assert first["type"] == "MODIFIED"
    assert first["object"]["kind"] == "Table"
    assert first["object"]["columnDefinitions"] == COLUMNS
    assert later["object"]["columnDefinitions"] is None
    assert first["object"]["rows"][0]["cells"] == ["team-a-dev", "3d"]
    assert first["object"]["rows"][0]["object"] == NS
    assert first["object"]["metadata"]["resourceVersion"] == "41"


def test_a_table_line_strips_or_slims_its_object_as_asked() -> None:
    out = Out("DELETED", NS, 60)
    stripped = orjson.loads(
        table_line(out, [], COLUMNS, first=False, partial=False, strip_objects=True, now=0.0)
    )
    slim = orjson.loads(
        table_line(out, [], COLUMNS, first=False, partial=True, strip_objects=False, now=0.0)
    )
    assert stripped["object"]["rows"][0]["object"] is None
    assert stripped["object"]["metadata"]["resourceVersion"] == "60"
    assert slim["object"]["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_bookmarks_take_the_clients_form() -> None:
    plain = orjson.loads(bookmark_line(70, "Namespace", "v1", table=False, partial=False))
    meta = orjson.loads(bookmark_line(70, "Namespace", "v1", table=False, partial=True))
    table = orjson.loads(bookmark_line(70, "Namespace", "v1", table=True, partial=True))
    end = orjson.loads(
        bookmark_line(70, "Namespace", "v1", table=False, partial=False, initial_end=True)
    )
    assert plain == {
        "type": "BOOKMARK",
        "object": {"kind": "Namespace", "apiVersion": "v1", "metadata": {"resourceVersion": "70"}},
    }
    assert meta["object"]["kind"] == "PartialObjectMetadata"
    assert table["object"]["kind"] == "Table"
    assert table["object"]["rows"] == []
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_an_error_line_carries_the_status_and_versions_read_as_numbers() -> None:
    error = orjson.loads(error_line(status.ApiError(429, "TooManyRequests", "slow")))
    assert error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (429, "TooManyRequests")
    assert resource_version(NS) == 41
    assert resource_version({"metadata": {}}) == 0
