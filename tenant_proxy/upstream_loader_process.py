"""Runs the loader child (upstream_loader.py) and reads its one answer.

The child gets a new session, so that on a timeout (a plugin that hangs, an IdP that does not
answer) or a cancellation it is killed with everything it started. The request goes to its
stdin and the answer comes from its stdout: neither is ever in argv, a log or a file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

# The loader runs this package's own copy of upstream_loader.py (the one the parent runs), and
# with -P nothing from the working directory shadows it or the library.
_ROOT = str(Path(__file__).resolve().parents[1])
_LOADER_CODE = (
    f"import sys; sys.path.insert(0, {_ROOT!r}) if {_ROOT!r} not in sys.path else None; "
    "from tenant_proxy.upstream_loader import main; main()"
)
LOADER_ARGV = (sys.executable, "-P", "-c", _LOADER_CODE)


def kubeconfig_paths(explicit: Path | None, environ: Mapping[str, str]) -> list[str]:
    """The kubeconfig files to merge: the configured one, else `$KUBECONFIG`'s list."""
    if explicit is not None:
        return [str(explicit)]
    listed = environ.get("KUBECONFIG", "").split(os.pathsep)
    return list(dict.fromkeys(os.path.expanduser(p) for p in listed if p))


def first_current_context(paths: list[str], files: Mapping[str, Any]) -> str | None:
    """client-go's rule: the first file that sets current-context decides."""
    for path in paths:
        doc = files.get(path)
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.removeprefix("Invalid kube-config file. ")


class LoaderFailure(Exception):
    """The loader gave no answer: it died, or did not finish in time (one line)."""


def _answer(out: bytes, code: int | None, err: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # No answer: the child died (a traceback's last line says why; never the request).
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {code}"]
        raise LoaderFailure(f"the credential loader failed: {one_line(ValueError(last[0]))}")
    return answer


def _kill(pid: int) -> None:
    """The loader and whatever it started (an exec plugin): they share its new session."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _timed_out(within: float) -> LoaderFailure:
    return LoaderFailure(
        f"the credential loader (or the exec plugin it runs) did not finish within {within:g} s"
    )


def run_loader_sync(request: Mapping[str, Any], within: float) -> dict[str, Any]:
    """The loader's answer to `request`, blocking (at construction, before any serving)."""
    with subprocess.Popen(
        LOADER_ARGV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(json.dumps(request).encode(), timeout=within)
        except subprocess.TimeoutExpired:
            _kill(proc.pid)
            raise _timed_out(within) from None
    return _answer(out, proc.returncode, err)


async def run_loader(request: Mapping[str, Any], within: float) -> dict[str, Any]:
    """The loader's answer to `request`; killed, with its plugin, on timeout or cancellation."""
    proc = await asyncio.create_subprocess_exec(
        *LOADER_ARGV,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate(json.dumps(request).encode())
    except TimeoutError:
        raise _timed_out(within) from None
    finally:
        if proc.returncode is None:
            _kill(proc.pid)
            await proc.wait()
    return _answer(out, proc.returncode, err)
