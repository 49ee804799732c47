"""Structured logging: one JSON object per line on stderr (ts, level, event, fields), rendered
by python-json-logger. A command's log lines carry the `request_id` of the server request that
queued it, so one id can be followed from the web request to the agent (docs/observability.md)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

_FIELDS_ATTR = "agent_fields"


class JsonFormatter(_LibraryJsonFormatter):
    """``{"ts", "level", "event", ...fields}`` on one line. The fields travel in one record
    attribute (so a field may be called ``name`` or ``args`` without clashing with the
    record's own attributes) and are spread into the object here."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(message)s",
            rename_fields={"levelname": "level", "message": "event", "exc_info": "exception"},
            timestamp="ts",
            reserved_attrs=[*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message"],
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["level"] = str(log_data.get("level", "")).lower()
        fields = log_data.pop(_FIELDS_ATTR, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                log_data.setdefault(key, value)
        return log_data


def setup_logging(level: str = "info") -> None:
    """Route the ``agent`` logger tree to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("agent")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (never put secrets in them)."""
    logger.log(level, event, extra={_FIELDS_ATTR: fields})
