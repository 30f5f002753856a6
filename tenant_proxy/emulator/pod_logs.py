"""`pods/<name>/log`: a pod's annotation lines, then what a `LogBook` appends (follow)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.types import Attributes, KubeObject

LOG_ANNOTATION = "emulator.tenant-proxy.io/log"
_IDLE_CHECK = 1.0  # seconds between checks that a log follower is still connected


class LogBook:
    """Log lines appended in-process (the emulator's stand-in for container output).

    `pods/log?follow=true` streams what is appended until `close` (say, the pod is deleted).
    """

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], list[str]] = {}
        self._closed: set[tuple[str, str]] = set()
        self._changed: dict[tuple[str, str], asyncio.Event] = {}

    def append_log(self, namespace: str, pod: str, line: str) -> None:
        key = (namespace, pod)
        self._lines.setdefault(key, []).append(line.rstrip("\n"))
        self._wake(key)

    def close(self, namespace: str, pod: str) -> None:
        key = (namespace, pod)
        self._closed.add(key)
        self._wake(key)

    def lines(self, namespace: str, pod: str) -> list[str]:
        return list(self._lines.get((namespace, pod), ()))

    async def wait_past(self, namespace: str, pod: str, seen: int) -> bool:
        """Wait until more than `seen` lines exist; False once the log is closed."""
        key = (namespace, pod)
        while len(self._lines.get(key, ())) <= seen:
            if key in self._closed:
                return False
            event = self._changed.setdefault(key, asyncio.Event())
            await event.wait()
        return True

    def _wake(self, key: tuple[str, str]) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()


def meta(pod: KubeObject) -> dict[str, Any]:
    meta: dict[str, Any] = pod.get("metadata") or {}
    return meta


def initial_log_lines(pod: KubeObject) -> list[str]:
    """What the pod has "printed" before anything was appended."""
    text = (meta(pod).get("annotations") or {}).get(LOG_ANNOTATION)
    if text is None:
        return [f"hello from {meta(pod).get('name', '')}"]
    return str(text).splitlines()


def container_name(pod: KubeObject, asked: str) -> str:
    """The container a log/exec/attach request means, validated as the real server does."""
    name = str(meta(pod).get("name", ""))
    containers = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or ()]
    if asked:
        if containers and asked not in containers:
            raise errors.bad_request(f"container {asked} is not valid for pod {name}")
        return asked
    if len(containers) > 1:
        raise errors.bad_request(
            f"a container name must be specified for pod {name}, "
            f"choose one of: [{' '.join(containers)}]"
        )
    return containers[0] if containers else ""


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f'invalid value for "{name}": {raw}') from None


def _log_line(line: str, timestamps: bool) -> bytes:
    if timestamps:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        line = f"{stamp} {line}"
    return (line + "\n").encode()


async def pod_log(
    request: web.Request,
    attrs: Attributes,
    pod: KubeObject,
    follow_events: LogBook | None = None,
) -> web.StreamResponse:
    """`GET pods/<name>/log`: tailLines, limitBytes, timestamps, follow.

    Without a LogBook only the pod's own lines are served and `follow` ends at once.
    """
    container = container_name(pod, request.query.get("container", ""))
    if flag(request, "previous"):
        raise errors.bad_request(
            f'previous terminated container "{container}" in pod "{attrs.name}" not found'
        )
    tail, limit = _int_param(request, "tailLines"), _int_param(request, "limitBytes")
    stamps = flag(request, "timestamps")
    namespace = str(meta(pod).get("namespace", attrs.namespace))
    name = str(meta(pod).get("name", attrs.name))
    if follow_events is None:
        follow_events = LogBook()
        follow_events.close(namespace, name)
    existing = initial_log_lines(pod) + follow_events.lines(namespace, name)
    shown = existing[-tail:] if tail is not None and tail >= 0 else existing
    if tail == 0:
        shown = []
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    budget = _Budget(limit)
    for line in shown:
        if not await budget.write(response, _log_line(line, stamps)):
            return response
    if flag(request, "follow"):
        seen = len(existing) - len(initial_log_lines(pod))
        while await _more_lines(request, follow_events, namespace, name, seen):
            for line in follow_events.lines(namespace, name)[seen:]:
                seen += 1
                if not await budget.write(response, _log_line(line, stamps)):
                    return response
    await response.write_eof()
    return response


async def _more_lines(
    request: web.Request, book: LogBook, namespace: str, name: str, seen: int
) -> bool:
    """Wait for a new line; False when the log closes or the client has gone (a server
    without handler cancellation would otherwise keep this follower forever)."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        try:
            return await asyncio.wait_for(book.wait_past(namespace, name, seen), _IDLE_CHECK)
        except TimeoutError:
            continue


class _Budget:
    """limitBytes: stop writing once the limit is reached."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    async def write(self, response: web.StreamResponse, data: bytes) -> bool:
        if self.left is not None:
            data = data[: self.left]
            self.left -= len(data)
        if data:
            await response.write(data)
        return self.left is None or self.left > 0
