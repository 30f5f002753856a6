"""Fixtures for the filtering tests: answers recorded from a real kube-apiserver, parsed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def _body_lines(name: str) -> list[str]:
    lines = (REFERENCE / f"{name}.txt").read_text().splitlines()
    start = lines.index("<") + 1
    return [line for line in lines[start:] if not line.startswith("# ")]


def reference_body(name: str) -> dict[str, Any]:
    """The JSON body of a recorded non-watch answer."""
    body: dict[str, Any] = json.loads("\n".join(_body_lines(name)))
    return body


def reference_events(name: str) -> list[dict[str, Any]]:
    """The events of a recorded watch answer, in order."""
    return [json.loads(line) for line in _body_lines(name) if line.strip()]


@pytest.fixture
def body() -> Callable[[str], dict[str, Any]]:
    return reference_body


@pytest.fixture
def events() -> Callable[[str], list[dict[str, Any]]]:
    return reference_events
