"""The status values of runs, steps and batches, the sets the code and the indexes share, and their SQL.

The one list of status values (`RunStatus`, `StepStatus`, `BatchStatus`; `engine/states.py` builds the
state machines over them and re-exports them). The sets below name what callers mean (live, terminal,
due, ...); each has an SQL form made by `sql_list` (`RUN_LIVE_SQL` = `('queued', 'running',
'waiting')`) for statements that put the set in their text, which they must where a partial index's
predicate has to match (`runs_live`, `steps_due`, ...: the planner uses a partial index only when the
query implies its predicate). `tests/integration/test_status_sets.py` reads every partial index of
the migrated database (`pg_indexes.indexdef`) and checks its status set is one of these. Sets are
plain strings (a `str` Enum hashes by name, so `"queued" in {RunStatus.QUEUED}` would be False).
Lives in store/ because store/ is the layer every other one may import.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Literal


class RunStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(str, Enum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class BatchStatus(str, Enum):
    LOADING = "loading"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


BatchStatusName = Literal[  # a batch row's status as a type (`store.batches.BatchRow`)
    "loading", "running", "succeeded", "failed", "cancelled"
]


def values(*statuses: Enum) -> tuple[str, ...]:
    """The plain string values of `statuses`, in the order given."""
    return tuple(str(s.value) for s in statuses)


def sql_list(statuses: Iterable[str]) -> str:
    """`('a', 'b')`: an SQL IN list of status values (never user input: only these constants)."""
    items = list(statuses)
    if not items or not all(s.isidentifier() for s in items):
        raise ValueError(f"not a list of status values: {items!r}")
    return "(" + ", ".join(f"'{s}'" for s in items) + ")"


def sql_value(status: Enum) -> str:
    """`'a'`: one status value as an SQL literal."""
    return sql_list([str(status.value)])[1:-1]


R, S, B = RunStatus, StepStatus, BatchStatus
RUN_LIVE = values(R.QUEUED, R.RUNNING, R.WAITING)  # index runs_live
RUN_ACTIVE = values(R.RUNNING, R.WAITING)  # started and live
RUN_ENDED = values(R.SUCCEEDED, R.FAILED, R.CANCELLED)  # index runs_prunable
RUN_TERMINAL = frozenset(RUN_ENDED)
STEP_LIVE = values(S.PENDING, S.READY, S.RUNNING, S.RETRYING, S.WAITING)
STEP_ACTIVE = values(S.READY, S.RUNNING, S.RETRYING, S.WAITING)  # index steps_live_items
STEP_DUE = values(S.RETRYING, S.WAITING)  # index steps_due: steps with a timer
STEP_TERMINAL = frozenset(values(S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED))
BATCH_LIVE = values(B.LOADING, B.RUNNING)
BATCH_ENDED = values(B.SUCCEEDED, B.FAILED, B.CANCELLED)
BATCH_TERMINAL = frozenset(BATCH_ENDED)

RUN_LIVE_SQL = sql_list(RUN_LIVE)
RUN_ACTIVE_SQL = sql_list(RUN_ACTIVE)
RUN_ENDED_SQL = sql_list(RUN_ENDED)
STEP_ACTIVE_SQL = sql_list(STEP_ACTIVE)
STEP_DUE_SQL = sql_list(STEP_DUE)
BATCH_LIVE_SQL = sql_list(BATCH_LIVE)
BATCH_ENDED_SQL = sql_list(BATCH_ENDED)
