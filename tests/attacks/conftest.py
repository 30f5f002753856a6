"""One attack world for the whole session (see attack_support.py): the proxy is a subprocess
and its upstream runs on a thread of its own, so every case shares them whatever its loop."""

from __future__ import annotations

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
