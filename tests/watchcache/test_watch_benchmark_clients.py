"""The watch benchmark still runs with its watchers spread over worker processes
(`--clients`): at a tiny size, every watcher of every worker reports the changes. No timing
asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_watch_benchmark_spreads_its_watchers_over_client_processes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.watch_rss", "--quick", "--clients", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any("2 client processes" in line for line in lines)
    rows = [line for line in lines if line.startswith("| ")]
    assert any("ADDED at all 20 watchers" in row for row in rows)
    assert any("DELETED at all 20 watchers" in row for row in rows)
