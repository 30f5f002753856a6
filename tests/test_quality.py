"""The code standards, enforced by the test run: lint, format, types, layering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize(
    "cmd",
    [
        ("ruff", "check", "tenant_proxy", "tests", "benchmarks"),
        ("ruff", "format", "--check", "tenant_proxy"),
        pytest.param(("mypy", "tenant_proxy"), marks=pytest.mark.slow),
        ("lint-imports",),
    ],
    ids=["ruff-check", "ruff-format", "mypy", "import-layers"],
)
def test_tool_passes(cmd: tuple[str, ...]) -> None:
    result = run(str(BIN / cmd[0]), *cmd[1:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
