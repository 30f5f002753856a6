"""One `/metrics` for `--workers N`: prometheus-client's multiprocess mode, owned by tenant-proxy.

Every worker writes its values to memory-mapped files in one directory and whichever worker a
scrape lands on merges them all, so request totals neither jump between scrapes nor reset. The
directory is private to one run of the parent: created empty (mode 0700) before the workers
start, removed when they have all exited. An inherited `PROMETHEUS_MULTIPROC_DIR` is ignored:
tenant-proxy wipes the directory it uses, so it only ever uses one it created itself.

This module imports nothing of prometheus-client: `forget_inherited` must run before that is
imported, since prometheus-client picks its value store from the environment at import time.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_ENV = "prometheus_multiproc_dir"  # still honoured by prometheus-client


def forget_inherited() -> str | None:
    """Drop an inherited multiprocess directory from the environment; the one dropped, if any."""
    dropped = [os.environ.pop(name, None) for name in (ENV, _LEGACY_ENV)]
    inherited = next((path for path in dropped if path is not None), None)
    if inherited is not None and "prometheus_client" in sys.modules:
        # Too late: the values already live in that directory, which this run would not own.
        raise RuntimeError(f"{ENV} was dropped after prometheus_client was imported")
    return inherited


@contextmanager
def private_dir() -> Iterator[Path]:
    """A fresh directory for this run's workers, in the environment they inherit."""
    with tempfile.TemporaryDirectory(prefix="tenant-proxy-metrics-") as name:
        os.environ[ENV] = name
        try:
            yield Path(name)
        finally:
            os.environ.pop(ENV, None)
