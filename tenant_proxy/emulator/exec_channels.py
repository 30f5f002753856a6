"""The echo "container" behind exec and attach, and the channel framing kubectl speaks.

Pure: `plan_command` says what a command does, `exit_status` is the kubelet's error-channel
Status, `encode_frame` / `decode_frame` are the v5/v4.channel.k8s.io (and base64) framings.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
BASE64 = "base64.channel.k8s.io"
CHANNEL = "channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, BASE64, CHANNEL)
_SHELLS = {"sh", "bash", "ash", "dash"}
_KNOWN = {"echo", "true", "false", "exit", "hostname", "cat", "sleep", *_SHELLS}


@dataclass(frozen=True)
class Finished:
    """A command that runs to completion without reading stdin."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0


@dataclass(frozen=True)
class Interactive:
    """A command that copies stdin to stdout until stdin closes (`cat`, an interactive shell)."""


@dataclass(frozen=True)
class Sleeping:
    """`sleep N`: finishes after N seconds (None: never), or when the client goes away."""

    seconds: float | None


Plan = Finished | Interactive | Sleeping


def _not_found(cmd: str) -> Finished:
    message = (
        "OCI runtime exec failed: exec failed: unable to start container process: "
        f'exec: "{cmd}": executable file not found in $PATH: unknown\r\n'
    )
    return Finished(stdout=message.encode(), exit_code=127)


def _shell(args: Sequence[str], pod_name: str, stdin: bool) -> Plan:
    if len(args) >= 2 and args[0] == "-c":
        try:
            script = shlex.split(args[1])
        except ValueError:
            return Finished(stderr=b"sh: syntax error: unterminated quoted string\n", exit_code=2)
        if not script:
            return Finished()
        if script[0].rsplit("/", 1)[-1] not in _KNOWN:
            return Finished(stderr=f"sh: 1: {script[0]}: not found\n".encode(), exit_code=127)
        return plan_command(script, pod_name, stdin=False)
    return Interactive() if stdin else Finished()


def plan_command(argv: Sequence[str], pod_name: str, *, stdin: bool) -> Plan:
    """What the echo container does for `argv`."""
    if not argv:
        return Finished()
    cmd, args = argv[0].rsplit("/", 1)[-1], list(argv[1:])
    if cmd == "echo":
        newline = not (args and args[0] == "-n")
        words = args[1:] if not newline else args
        return Finished(stdout=(" ".join(words) + ("\n" if newline else "")).encode())
    if cmd in ("true", "false", "exit"):
        code = {"true": 0, "false": 1}.get(cmd)
        if code is None:
            code = int(args[0]) % 256 if args and args[0].lstrip("-").isdigit() else 0
        return Finished(exit_code=code)
    if cmd == "hostname":
        return Finished(stdout=f"{pod_name}\n".encode())
    if cmd == "cat" and not args:
        return Interactive() if stdin else Finished()
    if cmd == "sleep" and args:
        try:
            return Sleeping(float(args[0]))
        except ValueError:
            return Finished(stderr=f"sleep: invalid number '{args[0]}'\n".encode(), exit_code=1)
    if cmd in _SHELLS:
        return _shell(args, pod_name, stdin)
    return _not_found(argv[0])


def exit_status(argv: Sequence[str], exit_code: int) -> dict[str, Any]:
    """The error-channel Status for an exit code, as the kubelet writes it (v4 and v5)."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"[{' '.join(argv)}], exit code {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


# --- channel framing ----------------------------------------------------------------------


def encode_frame(protocol: str, channel: int, data: bytes) -> bytes | str:
    """One WebSocket message: the channel byte then the data (base64 protocols: text)."""
    if protocol in (V4_BASE64, BASE64):
        return str(channel) + base64.b64encode(data).decode("ascii")
    return bytes([channel]) + data


def decode_frame(protocol: str, message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, data) of a client message; None when it is not a frame."""
    if isinstance(message, str):
        if protocol not in (V4_BASE64, BASE64) or not message or not message[0].isdigit():
            return None
        try:
            return int(message[0]), base64.b64decode(message[1:], validate=True)
        except binascii.Error:
            return None
    if not message:
        return None
    return message[0], bytes(message[1:])


def status_frame(protocol: str, argv: Sequence[str], exit_code: int) -> bytes | str:
    status = exit_status(argv, exit_code)
    if protocol in (V4, V5, V4_BASE64):
        payload = json.dumps(status, separators=(",", ":")).encode()
    else:
        # channel.k8s.io v1: the error channel carries a plain message, empty on success.
        payload = status.get("message", "").encode()
    return encode_frame(protocol, ERROR, payload)
