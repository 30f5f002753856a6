"""Fault injection: the next N requests fail with a status; every request may be delayed."""

from __future__ import annotations

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.errors import StatusError


class Faults:
    """Injected failures and latency, consumed by the next requests."""

    def __init__(self) -> None:
        self.remaining = 0
        self.status = 500
        self.retry_after: int | None = None
        self.latency = 0.0
        self.cut_lists = 0
        self.cut_after = 0

    def take_cut(self, verb: str) -> bool:
        """Whether this answer (of `verb`) is one of the list answers to cut off."""
        if verb != "list" or self.cut_lists <= 0:
            return False
        if self.cut_after > 0:
            self.cut_after -= 1
            return False
        self.cut_lists -= 1
        return True

    def next_failure(self) -> StatusError | None:
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        if self.status == 429:
            return errors.too_many_requests(self.retry_after or 1)
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 503:
            err = errors.service_unavailable()
        elif self.status == 500:
            err = errors.internal_error("injected fault")
        else:
            err = StatusError(self.status, "InternalError", f"injected fault {self.status}", {})
        err.headers.update(headers)
        return err
