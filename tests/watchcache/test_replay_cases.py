"""The replay against what kube-apiserver's cacher recorded: an object moving in and out of a
label selector's set (tests/reference/watch-namespaces-selector-transitions.txt) gives the
same events, with the same resourceVersions and objects, when the selector is a tenant's side.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tenant_proxy.watchcache.replay import Out, Side, events_for
from tenant_proxy.watchcache.timeline import Timeline

REFERENCE = Path(__file__).parents[1] / "reference" / "watch-namespaces-selector-transitions.txt"
LABEL = "example.com/tenant"


def recorded() -> list[dict[str, Any]]:
    text = REFERENCE.read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def team_a(obj: Any) -> bool:
    return bool(obj["metadata"].get("labels", {}).get(LABEL) == "team-a")


def test_selector_transitions_replay_as_the_cacher_sent_them() -> None:
    events = recorded()
    added, _gone, again, terminating, finalized, deleted = (e["object"] for e in events)
    unlabelled = copy.deepcopy(added)
    unlabelled["metadata"]["labels"] = {"kubernetes.io/metadata.name": "team-a-new"}
    unlabelled["metadata"]["resourceVersion"] = "264"
    to_b = copy.deepcopy(added)
    to_b["metadata"]["labels"][LABEL] = "team-b"
    to_b["metadata"]["resourceVersion"] = "266"
    # The history the API server's store went through, in order.
    history = [(unlabelled, 264), (added, 265), (to_b, 266), (again, 267), (terminating, 268)]
    history += [(finalized, 273), (None, 274)]

    timeline: Timeline[str] = Timeline({}, 258, "only tenancy")
    side = Side("team-a", team_a)
    out: list[Out] = []
    for obj, rv in history:
        entry = timeline.change("team-a-new", obj, rv)
        assert entry is not None
        out += events_for(entry, side, side, lambda _o: True, lambda: {})

    assert [(o.type, o.stamp or int(o.obj["metadata"]["resourceVersion"])) for o in out] == [
        (e["type"], int(e["object"]["metadata"]["resourceVersion"])) for e in events
    ]
    # Leaving the set: the last state the client saw (still team-a), at the change's version.
    assert out[1].obj["metadata"]["labels"][LABEL] == "team-a"
    assert out[1].stamp == 266
    assert out[-1].obj == finalized  # a deletion carries the last state, at the deletion's rv
    assert out[-1].stamp == 274
    assert deleted["metadata"]["resourceVersion"] == "274"
