"""The metrics directory of `--workers N`: private, fresh, gone afterwards; an inherited one is
dropped before prometheus-client can use it (end to end: tests/e2e/test_metrics_workers.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tenant_proxy import shared_metrics
from tenant_proxy.observability.metrics import Metrics


def forget_in_a_fresh_interpreter(env: dict[str, str]) -> list[str]:
    """forget_inherited() where prometheus_client is not imported yet: what it returned, and
    whether either spelling is still in the environment."""
    code = (
        "import os; from tenant_proxy import shared_metrics as m; print(m.forget_inherited()); "
        "print(sorted({'PROMETHEUS_MULTIPROC_DIR', 'prometheus_multiproc_dir'} & set(os.environ)))"
    )
    clean = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("env", "dropped"),
    [
        ({}, "None"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/a"}, "/a"),
        ({"prometheus_multiproc_dir": "/b"}, "/b"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/a", "prometheus_multiproc_dir": "/b"}, "/a"),
    ],
)
def test_forget_inherited_drops_both_spellings(env: dict[str, str], dropped: str) -> None:
    assert forget_in_a_fresh_interpreter(env) == [dropped, "[]"]


def test_forget_inherited_refuses_once_prometheus_client_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "prometheus_client" in sys.modules  # this test process imported it above
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/a")
    with pytest.raises(RuntimeError, match="after prometheus_client was imported"):
        shared_metrics.forget_inherited()


def test_private_dir_is_fresh_owner_only_named_to_children_and_removed() -> None:
    with shared_metrics.private_dir() as directory:
        assert list(directory.iterdir()) == []
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
        (directory / "counter_1.db").write_bytes(b"values")
    assert not directory.exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_private_dir_is_removed_when_the_run_fails() -> None:
    with pytest.raises(SystemExit), shared_metrics.private_dir() as directory:
        raise SystemExit(1)
    assert not directory.exists()


def test_shared_metrics_need_the_directory_in_the_environment(tmp_path: Path) -> None:
    # Without it prometheus-client keeps values in memory: the scrape would miss this worker.
    with pytest.raises(RuntimeError, match="does not name"):
        Metrics(tmp_path)
