"""JSON log lines carry the process's context ids and each record's extra fields."""

from __future__ import annotations

import json
import logging

import pytest

from hamnet_jax.errors import InputError
from hamnet_jax.monitoring.logs import JsonFormatter, use_json_logs


def test_json_lines_hold_context_extra_and_traceback():
    record = logging.LogRecord("hamnet_jax.training", logging.INFO, __file__, 1, "epoch %d done", (3,), None)
    record.loss = 0.25
    line = json.loads(JsonFormatter({"run_id": "runs/a"}).format(record))
    assert line["message"] == "epoch 3 done" and line["run_id"] == "runs/a" and line["loss"] == 0.25
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exception"]


def test_the_level_comes_from_hamnet_log_level(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setenv("HAMNET_LOG_LEVEL", "warning")
        use_json_logs(study="s1")
        assert root.level == logging.WARNING and isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.handlers[0].formatter.context == {"study": "s1"}
        with pytest.raises(InputError, match="log level 'LOUD' is unknown"):
            use_json_logs("loud")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
