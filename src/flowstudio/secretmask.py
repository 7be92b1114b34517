"""Masking secret values in text: stored outputs, live token streams and log records.

Masking is the LAST line, not the boundary: the boundary is that a template cannot read a secret
except whole in a credential field (`nodes/sandbox.py`) and that a run only gets the flow owner's
bound secrets (`worker/secret_values.py`). A model or a remote server can still echo a secret back
transformed (spaced out, encoded); masking only catches it verbatim.
- `mask_text(text, secrets)`: every occurrence replaced by `***` (secrets shorter than
  `MIN_MASKED_LEN` are left alone: they would mask ordinary text and protect nothing).
- `StreamMasker`: the same for text arriving in pieces (LLM tokens): it holds back the last
  (longest secret - 1) chars, so a secret split across tokens is masked before any of it leaves.
- `install_log_filter()` (each process's logging setup, `cli.setup_logging`): a log record factory
  that masks the values of the secrets in flight (`in_flight(values)`, entered by the worker around
  each step) in the message, its arguments, the traceback and the stack of every record, whichever
  handler or formatter writes it. Recently finished values stay masked for late log lines.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

MASK = "***"
MIN_MASKED_LEN = 4
RECENT = 256  # finished values kept masked for late log lines


def masked_secrets(values: Iterable[str]) -> tuple[str, ...]:
    """The values worth masking, longest first (a longer one may contain a shorter one)."""
    return tuple(sorted({v for v in values if len(v) >= MIN_MASKED_LEN}, key=len, reverse=True))


def mask_text(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class StreamMasker:
    """Masks a stream of text pieces; `feed` returns what may leave now, `end` the rest."""

    def __init__(self, values: Iterable[str]) -> None:
        self.secrets = masked_secrets(values)
        self.hold = max((len(s) for s in self.secrets), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> str:
        if not self.secrets:
            return text
        buf = mask_text(self.pending + text, self.secrets)
        cut = len(buf) - self.hold
        if cut <= 0:
            self.pending = buf
            return ""
        self.pending = buf[cut:]
        return buf[:cut]

    def end(self) -> str:
        out = mask_text(self.pending, self.secrets) if self.secrets else self.pending
        self.pending = ""
        return out


class _InFlight:
    """The secret values of the steps running in this process (any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: Counter[str] = Counter()
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.snapshot: tuple[str, ...] = ()

    def _refresh(self) -> None:
        self.snapshot = masked_secrets([*self.active, *self.recent])

    def enter(self, values: tuple[str, ...]) -> None:
        with self.lock:
            self.active.update(values)
            self._refresh()

    def leave(self, values: tuple[str, ...]) -> None:
        with self.lock:
            self.active.subtract(values)
            for v in values:
                if self.active[v] <= 0:
                    del self.active[v]
                self.recent[v] = None
                self.recent.move_to_end(v)
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)
            self._refresh()


IN_FLIGHT = _InFlight()


@contextmanager
def in_flight(values: Iterable[str]) -> Iterator[None]:
    """Mask `values` in every log record of this process while the block runs (and a while after)."""
    vals = masked_secrets(values)
    if not vals:
        yield
        return
    IN_FLIGHT.enter(vals)
    try:
        yield
    finally:
        IN_FLIGHT.leave(vals)


def mask_record(record: logging.LogRecord, secrets: tuple[str, ...]) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the raw msg, masked
        message = str(record.msg)
    masked = mask_text(message, secrets)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[0] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = mask_text(text, secrets)
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = mask_text(record.exc_text, secrets)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info, secrets)


_installed = False


def install_log_filter() -> None:
    """Wrap the process's log record factory once; records are masked as they are made."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        secrets = IN_FLIGHT.snapshot
        if secrets:
            mask_record(record, secrets)
        return record

    logging.setLogRecordFactory(factory)
