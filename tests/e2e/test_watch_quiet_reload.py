"""A tenancy change reaching an open watch of a quiet resource (found by review h21).

A resource nothing has changed in since the proxy listed it (storage classes, priority
classes, ...) has a timeline without entries, whose head bookmarks move on. A config reload
(or the bump after a re-list for a new rule field) is no API event: it has no version of its
own, and is recorded as an entry ordered after the head. Before, it was stamped with the
tenancy inputs' latest version, which bookmarks had carried to the head, and folded into the
timeline's base as if from before the list: no open watch heard of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_kubectl import kubectl_stream
from watching import Watch, name_of, session_as

from tenant_proxy.demo import Demo
from tenant_proxy.server import ProxyServer
from tenant_proxy.tenancy.settings import ClassRuleSettings

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

STORAGE_CLASSES = "/apis/storage.k8s.io/v1/storageclasses"


def _rv(event: dict[str, Any]) -> int:
    return int(event["object"]["metadata"]["resourceVersion"])


def reload_team_a_storage_classes(proxy: ProxyServer, names: list[str]) -> None:
    tenants = [
        t.model_copy(update={"storageclasses": ClassRuleSettings(names=names)})
        if t.name == "team-a"
        else t
        for t in proxy.settings.tenancy.tenants
    ]
    tenancy = proxy.settings.tenancy.model_copy(update={"tenants": tenants})
    proxy.reload(proxy.settings.model_copy(update={"tenancy": tenancy}))


async def test_reload_reaches_an_open_watch_of_a_resource_nothing_changed_in(demo: Demo) -> None:
    assert demo.proxy is not None
    now = demo.emulator.store.resource_version  # nothing is written below
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        async with alice.get(f"{STORAGE_CLASSES}?watch=1&allowWatchBookmarks=true") as resp:
            assert resp.status == 200
            watch = Watch(resp)
            first = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (first["type"], name_of(first)) == ("ADDED", "gold")
            # The proxy's bookmark says the storage classes' stream has reached the API
            # server's version, as have the tenancy inputs' streams (their bookmarks too).
            await watch.until(lambda e: e["type"] == "BOOKMARK" and _rv(e) >= now)

            reload_team_a_storage_classes(demo.proxy, ["silver"])

            # Idle bookmarks come a second apart: the second one means a second passed with
            # the change unheard (one may have been on its way as the reload happened).
            after = [await watch.next() for _ in range(2)]
            moved = [(e["type"], name_of(e)) for e in after if e["type"] != "BOOKMARK"]
            assert moved[:1] in ([("DELETED", "gold")], [("ADDED", "silver")]), after


async def test_kubectl_get_w_shows_a_reload_of_a_quiet_resource(demo: Demo, alice: Path) -> None:
    """As a user sees it: `kubectl get -w` lists, then watches from the list's
    resourceVersion (a Table watch); the reload gives team-a silver instead of gold."""
    assert demo.proxy is not None
    args = ("get", "storageclasses", "-w", "--output-watch-events", "--no-headers")
    async with kubectl_stream(alice, *args) as watch:
        await watch.until(lambda line: line.split()[:2] == ["ADDED", "gold"])
        reload_team_a_storage_classes(demo.proxy, ["silver"])

        def both(_line: str) -> bool:  # in either order
            seen = {tuple(line.split()[:2]) for line in watch.lines}
            return {("ADDED", "silver"), ("DELETED", "gold")} <= seen

        await watch.until(both)
    shown = [tuple(line.split()[:2]) for line in watch.lines]
    assert sorted(shown) == [("ADDED", "gold"), ("ADDED", "silver"), ("DELETED", "gold")], shown
