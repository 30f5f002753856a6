"""Shared fixtures: an emulator seeded with the k8s-reference world, kubeconfigs, kubectl."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp
import pytest

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import kubectl_async, reference_emulator, session_for

KubeconfigFor = Callable[..., Path]
Kubectl = Callable[..., Awaitable["subprocess.CompletedProcess[str]"]]
SessionFor = Callable[..., aiohttp.ClientSession]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The `slow` tests go first (a stable sort keeps the rest in file order): the run's end is then
    # short tests on both xdist workers, not one long test holding the run while the other idles.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A started emulator holding the reference world (see emulator/data/reference-world.yaml)."""
    em = await reference_emulator(bookmark_interval=0.2)
    try:
        yield em
    finally:
        await em.stop()


@pytest.fixture
def kubeconfig_for(emulator: Emulator, tmp_path: Path) -> KubeconfigFor:
    """`kubeconfig_for(user, groups=())` -> path of a kubeconfig with a fresh client cert."""

    def make(user: str, groups: Iterable[str] = ()) -> Path:
        safe = user.replace(":", "_").replace("/", "_")
        return emulator.write_kubeconfig(tmp_path / f"{safe}.kubeconfig", user, tuple(groups))

    return make


@pytest.fixture
def kubectl(kubeconfig_for: KubeconfigFor) -> Kubectl:
    """`await kubectl(*args, kubeconfig=None, input=None, seconds=60)` -> CompletedProcess.

    Admin unless told otherwise. Async so the emulator keeps serving on the test's loop.
    """
    admin = kubeconfig_for("admin", ("system:masters",))

    async def run(
        *args: str, kubeconfig: Path | None = None, input: str | None = None, seconds: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return await kubectl_async(kubeconfig or admin, *args, input=input, seconds=seconds)

    return run


@pytest.fixture
async def session_for_user(emulator: Emulator) -> AsyncIterator[SessionFor]:
    """`session_for_user(user, groups=())` -> aiohttp session to the emulator (None: no cert)."""
    sessions: list[aiohttp.ClientSession] = []

    def make(user: str | None, groups: Iterable[str] = ()) -> aiohttp.ClientSession:
        session = session_for(emulator, user, tuple(groups))
        sessions.append(session)
        return session

    try:
        yield make
    finally:
        for session in sessions:
            await session.close()
