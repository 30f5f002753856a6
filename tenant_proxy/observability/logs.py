"""JSON log lines, and where each of the proxy's loggers writes them."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

from tenant_proxy.observability.audit_trail import audit_log


def iso_time(created: float) -> str:
    """A log record's time as ISO-8601 UTC with milliseconds (`2026-01-02T03:04:05.678Z`)."""
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields.

    An audit event record (`audit_event`) is written as the Event alone, as kube-apiserver's
    log backend writes its lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "audit_event", None)
        if isinstance(event, dict):
            return orjson.dumps(event).decode()
        doc: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def setup_logging(level: str, audit_file: str | None) -> None:
    """JSON logs to stderr; audit lines to stdout, a file, or nowhere."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    audit_log.propagate = False
    audit_log.handlers.clear()
    if audit_file is None:
        audit_log.disabled = True
        return
    audit_log.disabled = False
    audit_handler: logging.Handler = (
        logging.StreamHandler(sys.stdout) if audit_file == "-" else logging.FileHandler(audit_file)
    )
    audit_handler.setFormatter(JSONFormatter())
    audit_log.addHandler(audit_handler)
    audit_log.setLevel(logging.INFO)
