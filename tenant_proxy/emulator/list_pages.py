"""One page of a list, from a consistent snapshot of the store, as etcd's range read gives it."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.listing import ListOptions, decode_continue, encode_continue, matcher
from tenant_proxy.emulator.store import Store, TooOld, object_key
from tenant_proxy.emulator.types import KubeObject, ResourceType

_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


def list_page(
    store: Store, rt: ResourceType, namespace: str, opts: ListOptions
) -> tuple[list[KubeObject], dict[str, Any]]:
    """(items, list metadata) for one page, from a consistent snapshot."""
    rv, objects, start = _snapshot(store, rt, namespace, opts)
    # resourceVersion=0 is served from the watch cache, which does not paginate.
    limit = 0 if opts.resource_version == "0" and not opts.continue_token else opts.limit
    prefix = f"{namespace}/" if rt.namespaced and namespace else ""
    matches = matcher(rt, opts)
    items: list[KubeObject] = []
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    # Objects come in key order: a page starts where its key does, as etcd's range read
    # does (a scan from the first object would make paging quadratic).
    first = bisect.bisect_left(objects, start, key=lambda o: object_key(o)[len(prefix) :])
    for index in range(first, len(objects)):
        obj = objects[index]
        if not matches(obj):
            continue
        if limit and len(items) == limit:
            if opts.has_selector:
                more = any(matches(o) for o in objects[index:])
                remaining = None
            else:
                more, remaining = True, len(objects) - index
            if more:
                last = object_key(items[-1])[len(prefix) :]
                meta["continue"] = encode_continue(rv, last + "\x00")
                if remaining is not None:
                    meta["remainingItemCount"] = remaining
            break
        items.append(obj)
    return items, meta


def _snapshot(
    store: Store, rt: ResourceType, namespace: str, opts: ListOptions
) -> tuple[int, Sequence[KubeObject], str]:
    ns = namespace if rt.namespaced else None
    current = store.resource_version
    if opts.continue_token:
        rv, start = decode_continue(opts.continue_token)
        try:
            return rv, store.state_at(rt.group, rt.plural, ns, rv), start
        except TooOld:
            raise errors.expired(_CONTINUE_EXPIRED) from None
    rv_text = opts.resource_version
    if rv_text in ("", "0"):
        return current, store.in_key_order(rt.group, rt.plural, ns), ""
    try:
        asked = int(rv_text)
    except ValueError:
        raise errors.bad_request(f"invalid resource version: {rv_text}") from None
    if asked > current:
        raise StatusError(
            504,
            "Timeout",
            f"Too large resource version: {asked}, current: {current}",
            {
                "causes": [
                    {
                        "reason": "ResourceVersionTooLarge",
                        "message": "Too large resource version",
                    }
                ],
                "retryAfterSeconds": 1,
            },
        )
    if opts.rv_match == "Exact":
        try:
            return asked, store.state_at(rt.group, rt.plural, ns, asked), ""
        except TooOld:
            raise errors.expired() from None
    return current, store.in_key_order(rt.group, rt.plural, ns), ""
