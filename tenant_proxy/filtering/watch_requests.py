"""What a filtered watch asks for, read from its query: where it starts, how long it lasts,
whether it wants bookmarks, and the client's own selectors. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy import status
from tenant_proxy.filtering.objects import ObjectTest, everything
from tenant_proxy.kube.labels import SelectorError
from tenant_proxy.kube.selector_syntax import parse_selector
from tenant_proxy.requestinfo import RequestInfo, field_terms
from tenant_proxy.tenancy.ownership import field_value

# As kube-apiserver: a watch without timeoutSeconds lasts minRequestTimeout (1800 s) times a
# random factor in [1, 2), so reconnections spread out.
_MIN_REQUEST_TIMEOUT = 1800.0


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """What a watch asks, read from its query. Pure."""

    resume_from: int | None  # a resourceVersion to continue after; None: start with the state
    initial_events_end: bool  # sendInitialEvents: mark the end of the initial events
    bookmarks: bool
    timeout: float
    selected: ObjectTest


def read_watch_request(
    info: RequestInfo, draw: Callable[[], float] = random.random
) -> WatchRequest:
    """The watch `info` asks for; a Status for what the API server would refuse."""
    q = info.query
    rv_text = q.resource_version or ""
    send_initial = bool(q.send_initial_events)
    resume_from = None
    if rv_text not in ("", "0") and not send_initial:
        if not rv_text.isdigit():
            raise status.bad_request(f"invalid resource version: {rv_text}")
        resume_from = int(rv_text)
    timeout = float(q.timeout_seconds) if q.timeout_seconds else _MIN_REQUEST_TIMEOUT * (1 + draw())
    return WatchRequest(
        resume_from,
        send_initial and q.allow_watch_bookmarks,
        q.allow_watch_bookmarks,
        timeout,
        client_selector(q.label_selector, q.field_selector, info.name),
    )


def client_selector(
    label_selector: str | None, field_selector: str | None, name: str
) -> ObjectTest:
    """The client's own label and field selectors (and a watched name) as one test. Pure."""
    if not (label_selector or field_selector or name):
        return everything  # most watches: one test shared, no closure held per watch
    try:
        labels = parse_selector(label_selector or "")
    except SelectorError as exc:
        raise status.bad_request(str(exc)) from None
    fields = field_terms(field_selector)

    def selected(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if name and meta.get("name") != name:
            return False
        if not labels.matches(meta.get("labels") or {}):
            return False
        for path, equal, value in fields:
            found = field_value(obj, path)
            if (str(found) if found is not None else "") != value if equal else found == value:
                return False
        return True

    return selected
