"""Review h21: a tenancy change reaching an open watch of a quiet resource.

`Timeline.retarget` records no entry when the timeline holds none and the change's cause
version is not past its head ("a change from before the list this timeline started from").
But the cache passes the latest version any tenancy input has heard, also for a change that
is no API event (a config reload, the bump after a re-list for a new rule field), and that is
the list's own version, or one bookmarks carried every stream to: on a resource nothing has
changed in since the proxy listed it (storage classes, priority classes, ...), a later
tenancy change is folded into the timeline's base and no open watch of it hears of it (nor a
watch resumed from a list made before the change).
"""

from __future__ import annotations

from typing import Any

import pytest
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


@pytest.mark.xfail(
    strict=True,
    reason="h21: Timeline.retarget folds a tenancy change into the base of a timeline without "
    "entries when the tenancy inputs' latest version is not past its head (a config reload): "
    "open watches of a quiet resource never hear of it",
)
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
