"""One attack world for the whole session (see attack_support.py): the proxy is a subprocess
and its upstream runs on a thread of its own, so every case shares them whatever its loop."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from attack_support import World, start_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    started = start_world(tmp_path_factory.mktemp("attacks"))
    try:
        yield started
    finally:
        started.close()


_CASES = itertools.count()


@pytest.fixture(autouse=True)
def own_client_address(request: pytest.FixtureRequest) -> None:
    """Each case connects from its own loopback address (127.0.2.1, 127.0.2.2, ...): the
    bystander probe comes from 127.0.0.2, kubectl from 127.0.0.1."""
    if "world" in request.fixturenames:
        world: World = request.getfixturevalue("world")
        n = next(_CASES)
        world.client_address = f"127.0.{2 + n // 250}.{1 + n % 250}"
