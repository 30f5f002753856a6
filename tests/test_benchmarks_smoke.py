"""The benchmarks still run: one of them, at a tiny size, prints its table. No timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_watch_benchmark_prints_its_table_at_quick_size() -> None:
    # Separate emulator and proxy processes, 200 namespaces, 20 watches through the proxy.
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.watch_rss", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| scenario"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "scenario",
        "proxy",
        "baseline",
        "ratio/added",
        "target",
        "met?",
    ]
    rows = [line for line in lines if line.startswith("| ") and line is not header]
    assert any("20 filtered watches open" in row for row in rows)
    assert any("ADDED at all 20 watchers" in row for row in rows)
