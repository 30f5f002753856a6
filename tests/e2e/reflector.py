"""A client-go reflector, as a test drives it: list, watch from the list's resourceVersion,
resume from the last resourceVersion seen (events and bookmarks), re-list on 410 Expired.

Built on kubernetes_asyncio (its `Watch` keeps the last resourceVersion as client-go does).
Its store is strict: an ADDED for an object it holds, or a MODIFIED/DELETED for one it does
not, is recorded as a fault, so a test sees a repeated or a missed transition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException


class Reflector:
    def __init__(self, api: client.ApiClient, lister: str) -> None:
        self._lister = getattr(client.CoreV1Api(api), lister)
        self.store: dict[str, dict[str, Any]] = {}
        self.rv = ""
        self.faults: list[str] = []
        self.seen: set[str] = set()  # every name any event or list ever carried
        self.relists = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def for_kubeconfig(cls, kubeconfig: Path, lister: str) -> tuple[Reflector, Any]:
        conf = client.Configuration()
        await config.load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
        api = client.ApiClient(conf)
        return cls(api, lister), api

    async def list(self) -> None:
        answer = await self._lister(_preload_content=False)
        doc = await answer.json()
        self.store = {item["metadata"]["name"]: item for item in doc["items"]}
        self.seen |= set(self.store)
        self.rv = doc["metadata"]["resourceVersion"]
        self.relists += 1
        self._changed.set()

    def start(self) -> None:
        """Watch in the background, as an informer does, until `stop`."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Drop the connection (as a network cut would); `start` resumes from `rv`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def until(self, predicate: Callable[[Reflector], bool], timeout: float = 15) -> None:
        async def wait() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def _run(self) -> None:
        while True:
            w = watch.Watch()
            try:
                async with w.stream(
                    self._lister,
                    resource_version=self.rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                ) as stream:
                    async for event in stream:
                        self._apply(event["type"], event["raw_object"])
            except ApiException as exc:
                if exc.status != 410:
                    raise
                await self.list()  # the window moved past us: re-list, as client-go does

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.rv = meta.get("resourceVersion") or self.rv
        if kind != "BOOKMARK":
            name = meta["name"]
            self.seen.add(name)
            held = name in self.store
            if kind == "ADDED" and held:
                self.faults.append(f"ADDED {name} already held")
            if kind in ("MODIFIED", "DELETED") and not held:
                self.faults.append(f"{kind} {name} not held")
            if kind == "DELETED":
                self.store.pop(name, None)
            else:
                self.store[name] = obj
        self._changed.set()
