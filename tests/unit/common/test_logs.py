"""One JSON object per log line, with the fields a job's and a trace's lines are found by."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_common import logs
from inference_common.logs import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("svc", logging.INFO, "x.py", 1, message, args, None)
    entry.__dict__.update(extra)
    return entry


def test_json_log_lines_carry_job_and_trace_ids() -> None:
    line = json.loads(
        JsonFormatter().format(record("done %s", "ok", job_id="a" * 32, trace_id="b" * 32))
    )
    assert line["message"] == "done ok"
    assert (line["job_id"], line["trace_id"], line["level"]) == ("a" * 32, "b" * 32, "INFO")
    assert line["logger"] == "svc" and line["time"].endswith("+00:00")
    # Only what the caller added: none of the record's own attributes leak into the line.
    assert set(line) == {"time", "level", "logger", "message", "job_id", "trace_id"}


def test_values_json_does_not_know_are_written_as_text() -> None:
    line = json.loads(JsonFormatter().format(record("x", path=Path("/tmp/a"))))
    assert line["path"] == "/tmp/a"


def test_uvicorns_coloured_copy_of_the_message_is_left_out() -> None:
    line = json.loads(JsonFormatter().format(record("started", color_message="\x1b[36mstarted")))
    assert "color_message" not in line


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = logging.LogRecord("svc", logging.ERROR, "x.py", 1, "failed", None, sys.exc_info())
    text = JsonFormatter().format(entry)
    assert "\n" not in text
    line = json.loads(text)
    assert "ValueError: boom" in line["exception"]


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield root
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_sends_every_logger_through_the_formatter(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure("warning")
    assert root_logger.level == logging.WARNING
    logging.getLogger("some.library").info("not shown")
    logging.getLogger("some.library").warning("shown", extra={"job_id": "j"})
    warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    shown, warned = lines  # the INFO line was below the level
    assert (shown["message"], shown["job_id"]) == ("shown", "j")
    assert warned["logger"] == "py.warnings" and "deprecated" in warned["message"]
