"""Logging setup for every process: LOG_FORMAT=text (default) or json, plus per-step context.

`setup_logging(level, fmt)` (called by `cli.main`) installs one stderr handler. With `json` each
record is one JSON object per line: `ts`, `level`, `logger`, `message`, `exc_info` when there is
one, and the context fields that apply. `log_context(**fields)` sets fields (run_id, step_id,
node_id, attempt, worker, ...) in a contextvar for the code inside it (the worker wraps each step
execution in it), so every line logged there carries them without naming them in the message; text
lines get them appended as `[run_id=... step_id=...]`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "flowstudio_log_context", default=None
)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _CONTEXT.set(
        {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    )
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get() or {})


class ContextFilter(logging.Filter):
    """Copies the current log context onto the record (`record.context`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _CONTEXT.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "context", {}).items():
            entry[key] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", {})
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return line


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
