"""Typed refusals of the engine's commands (`engine/commands.py`): one code enum, one exception.

A command that refuses raises `CommandError(code, detail, field=..., reason=...)` and has changed
nothing (its transaction rolled back, or never began). `code` is an `ErrorCode` (as DBOS's
`DBOSErrorCode`): callers branch on it, never on the message. `retryable` is a typed field (as
Temporal's `ApplicationError.non_retryable`): True when the same call may succeed later unchanged,
False when the caller must change something first; it defaults per code (`RETRYABLE`). `field`
names the command argument at fault (`node_id`, `idempotency_key`), `reason` says what is wrong with
it in a few words. The API turns each code into one HTTP status and problem+json body in one place
(`api/errors.py`, `ENGINE_PROBLEMS`); a test keeps that table complete.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    RUN_NOT_FOUND = "run_not_found"  # the run vanished (or never was) under the lock
    RUN_FINISHED = "run_finished"  # cancel/signal a run that is already terminal
    RUN_NOT_RESUMABLE = "run_not_resumable"  # resume a run that is neither failed nor cancelled
    UNKNOWN_NODE = "unknown_node"  # signal/fork name a node the run's flow version lacks
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # the key started a run of another flow
    BATCH_FINISHED = "batch_finished"  # cancel a batch that has already ended
    BATCH_CANCELLED = "batch_cancelled"  # the batch was cancelled while it was loading
    DATABASE_UNAVAILABLE = "database_unavailable"  # the database went away mid-command


# Codes whose call may succeed later as it is; every other code needs a changed request.
RETRYABLE = frozenset({ErrorCode.DATABASE_UNAVAILABLE})


class CommandError(Exception):
    """An engine command refused; nothing changed. See the module docstring for the fields."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field
        self.reason = reason
        self.retryable = code in RETRYABLE if retryable is None else retryable
