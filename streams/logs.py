"""Log set-up for the worker: one line per event of interest, as text or as JSON."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from streams.clock import format_time

# Conditions the worker expects and recovers from: a line names them, a traceback would not
# help an operator and would flood the log while the outage lasts.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError)
try:
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError

    EXPECTED_ERRORS += (KafkaConnectionError, NodeNotReadyError, RequestTimedOutError)
except ImportError:  # pragma: no cover - aiokafka is a dependency
    pass

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Framework loggers that narrate every rebalance and recovery step at INFO.
CHATTY = ("faust", "aiokafka", "mode")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the error class if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": format_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class ExpectedErrors(logging.Filter):
    """Drop the traceback of an expected, retried error; keep its line and the error's name."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EXPECTED_ERRORS):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({error.__class__.__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A dictConfig for the worker: our loggers at `level`, the framework's at warning or above."""
    level = {"warn": "WARNING", "crit": "CRITICAL"}.get(level, level.upper())
    quiet = level if level == "DEBUG" else "WARNING"
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "filters": {"expected": {"()": ExpectedErrors}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "line",
                "filters": ["expected"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {name: {"level": quiet} for name in CHATTY},
    }


def fatal(message: str, log_format: str, code: int) -> int:
    """Report why the worker cannot start, as one line on stderr; return the exit code."""
    if log_format == "json":
        record = logging.LogRecord("streams.worker", logging.ERROR, "", 0, message, None, None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)
    return code
