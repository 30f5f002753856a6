"""List and watch options, continue tokens, and what a selector-filtered watch sees. Pure."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    fields_match,
    labels_match,
    parse_fields,
    parse_labels,
    supported_fields,
)
from tenant_proxy.emulator.store import Event
from tenant_proxy.emulator.types import KubeObject, ResourceType

_BAD_CONTINUE = (
    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
)


@dataclass(frozen=True)
class ListOptions:
    """The list/watch query parameters, parsed and validated."""

    labels: LabelSelector = ()
    fields: FieldSelector = ()
    has_selector: bool = False
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    rv_match: str = ""
    watch: bool = False
    allow_bookmarks: bool = False
    send_initial_events: bool = False
    timeout_seconds: float | None = None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


def _list_options_invalid(field: str, message: str) -> StatusError:
    return StatusError(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {field}: Forbidden: {message}',
        {
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [
                {
                    "reason": "FieldValueForbidden",
                    "message": f"Forbidden: {message}",
                    "field": field,
                }
            ],
        },
    )


def _int_param(query: Mapping[str, str], key: str) -> int:
    raw = query.get(key, "")
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f'invalid value for {key}: "{raw}"') from None


def parse_list_options(rt: ResourceType, query: Mapping[str, str]) -> ListOptions:
    """ListOptions from a query; 400 for bad selectors, 422 for forbidden combinations."""
    label_text = query.get("labelSelector", "")
    field_text = query.get("fieldSelector", "")
    try:
        labels = parse_labels(label_text)
        fields = parse_fields(field_text, supported_fields(rt.group, rt.plural, rt.namespaced))
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
    rv = query.get("resourceVersion", "")
    rv_match = query.get("resourceVersionMatch", "")
    token = query.get("continue", "")
    send_initial = _truthy(query.get("sendInitialEvents"))
    if rv_match and not rv and not send_initial:
        raise _list_options_invalid(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )
    if token and rv and rv != "0":
        raise _list_options_invalid(
            "resourceVersion", "specifying resource version is not allowed when using continue"
        )
    if rv_match == "Exact" and rv == "0":
        raise _list_options_invalid(
            "resourceVersionMatch",
            'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
        )
    if send_initial and rv_match != "NotOlderThan":
        raise _list_options_invalid(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to "
            "NotOlderThan",
        )
    timeout = query.get("timeoutSeconds")
    return ListOptions(
        labels=labels,
        fields=fields,
        has_selector=bool(labels or fields),
        limit=max(_int_param(query, "limit"), 0),
        continue_token=token,
        resource_version=rv,
        rv_match=rv_match,
        watch=_truthy(query.get("watch")),
        allow_bookmarks=_truthy(query.get("allowWatchBookmarks")),
        send_initial_events=send_initial,
        timeout_seconds=float(_int_param(query, "timeoutSeconds")) if timeout else None,
    )


def matcher(rt: ResourceType, opts: ListOptions) -> Callable[[KubeObject], bool]:
    """Whether an object matches the options' label and field selectors."""
    getters = supported_fields(rt.group, rt.plural, rt.namespaced)
    labels, fields = opts.labels, opts.fields
    if not labels and not fields:
        return lambda obj: True
    return lambda obj: labels_match(labels, obj) and fields_match(fields, getters, obj)


def encode_continue(rv: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        doc = orjson.loads(base64.urlsafe_b64decode(padded))
        rv, start = int(doc["rv"]), str(doc["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise errors.bad_request(_BAD_CONTINUE) from None
    if doc.get("v") != "meta.k8s.io/v1" or rv <= 0:
        raise errors.bad_request(_BAD_CONTINUE)
    return rv, start


def translate(event: Event, matches: Callable[[KubeObject], bool]) -> tuple[str, KubeObject] | None:
    """What a selector-filtered watch sees of `event`, as the real watch cache sends it.

    An object entering the selector is ADDED; one leaving it is DELETED carrying its previous
    state at the event's resourceVersion (see watch-namespaces-selector-transitions).
    """
    now = matches(event.obj)
    if event.type == "MODIFIED":
        before = event.prev is not None and matches(event.prev)
        if now and before:
            return "MODIFIED", event.obj
        if now:
            return "ADDED", event.obj
        if before and event.prev is not None:
            prev = {
                **event.prev,
                "metadata": {**event.prev["metadata"], "resourceVersion": str(event.rv)},
            }
            return "DELETED", prev
        return None
    return (event.type, event.obj) if now else None


def strip_type(obj: KubeObject) -> KubeObject:
    """A list item: built-in lists carry no kind/apiVersion on their items."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def list_body(
    rt: ResourceType, items: list[KubeObject], meta: dict[str, Any], custom: bool
) -> dict[str, Any]:
    return {
        "kind": rt.list_kind,
        "apiVersion": rt.api_version,
        "metadata": meta,
        "items": items if custom else [strip_type(o) for o in items],
    }
