"""The emulator's data files: YAML shipped as package data in `tenant_proxy/emulator/data/`."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(name: str) -> Any:
    """The YAML document `data/<name>`; the caller checks its shape."""
    text = resources.files("tenant_proxy.emulator").joinpath("data", name).read_text()
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader, C or pure Python)
