"""Structured logs: one JSON object per record, with the ids that tie lines together.

    use_json_logs("INFO", run_id="runs/a")     # every record of the process, on stderr

Each line holds time (UTC, ISO 8601), level, logger, message, the record's `extra` fields
(the service adds `request_id`, `model`, `version`, `status`, `latency_ms`) and the
process's context fields (`run_id`, `study`, ...) given here: what log collectors (Loki,
Cloud Logging, ELK) parse without configuration. The level defaults to
`HAMNET_LOG_LEVEL` (INFO when unset).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any

from hamnet_jax.errors import InputError

# LogRecord attributes every record has; anything else was passed in `extra` and is logged
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the `extra` fields, the
    context fields, and the traceback when there is one."""

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.context = dict(context or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(), **self.context}
        out.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def use_json_logs(level: str | None = None, **context: Any) -> None:
    """Route every log record of the process through `JsonFormatter` on stderr."""
    level = (level or os.environ.get("HAMNET_LOG_LEVEL") or "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise InputError(f"log level {level!r} is unknown; expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(context))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
