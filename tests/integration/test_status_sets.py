"""The partial indexes of the migrated database filter on exactly the status sets the code uses.

A query uses a partial index only when its own WHERE implies the index's predicate, so the sets in
`store/statuses.py` (from which statements generate their `status IN (...)` text) and the sets in the
migrations' `CREATE INDEX ... WHERE status ...` must stay the same. This reads every partial index on
runs, steps and batches from `pg_indexes.indexdef` (as PostgreSQL normalized it, not the migration
text), requires each one whose predicate names `status` to be listed below, and compares its set.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from flowstudio.store.statuses import (
    RUN_ENDED,
    RUN_LIVE,
    RUN_LIVE_SQL,
    STEP_ACTIVE,
    STEP_DUE,
    STEP_DUE_SQL,
    StepStatus,
    sql_list,
    values,
)

S = StepStatus
# index -> the code's set its predicate must name (and what uses it).
EXPECTED: dict[str, tuple[str, ...]] = {
    "runs_live": RUN_LIVE,  # live runs: ops counts, recovery, batch caps
    "runs_prunable": RUN_ENDED,  # retention
    "steps_due": STEP_DUE,  # timers: recovery.fire_due_timers, ops
    "steps_lease": values(S.RUNNING),  # the reaper's expired leases
    "steps_ready": values(S.READY),  # redispatch, batch dispatch counts
    "steps_failed_at": values(S.FAILED),  # ops: top failing nodes
    "steps_pending_items": values(S.PENDING),  # map fan-out bookkeeping
    "steps_live_items": STEP_ACTIVE,  # map fan-out bookkeeping
    "steps_waiting_children": values(S.WAITING),  # subflow steps waiting for a child run
}
ANY_ARRAY = re.compile(r"status = ANY \(ARRAY\[([^\]]*)\]\)")
EQUALS = re.compile(r"status = '(\w+)'::text")


def status_set(predicate: str) -> set[str]:
    """The statuses a normalized predicate (`status = ANY (ARRAY['a'::text, ...])` or
    `status = 'a'::text`) admits."""
    found: set[str] = set()
    for group in ANY_ARRAY.findall(predicate):
        found |= set(re.findall(r"'(\w+)'::text", group))
    found |= set(EQUALS.findall(predicate))
    return found


def test_status_set_parses_both_normalized_forms() -> None:
    assert status_set("WHERE (status = ANY (ARRAY['a'::text, 'b'::text]))") == {"a", "b"}
    assert status_set("WHERE ((status = 'a'::text) AND (item_index > 0))") == {"a"}


def test_sql_lists_are_the_sets_in_order() -> None:
    assert RUN_LIVE_SQL == "('queued', 'running', 'waiting')"
    assert sql_list(("retrying", "waiting")) == STEP_DUE_SQL


def test_partial_index_predicates_use_the_codes_status_sets(db: psycopg.Connection[Any]) -> None:
    rows = db.execute("""SELECT indexname, indexdef FROM pg_indexes
           WHERE schemaname = current_schema() AND tablename IN ('runs', 'steps', 'batches')
             AND indexdef LIKE '%% WHERE %%'""").fetchall()
    with_status = {
        name: definition.split(" WHERE ", 1)[1]
        for name, definition in rows
        if "status" in definition.split(" WHERE ", 1)[1]
    }
    unlisted = sorted(set(with_status) - set(EXPECTED))
    assert not unlisted, f"partial indexes on status missing from EXPECTED: {unlisted}"
    missing = sorted(set(EXPECTED) - set(with_status))
    assert not missing, f"indexes expected but not in the database: {missing}"
    wrong = {
        name: (sorted(status_set(predicate)), sorted(EXPECTED[name]))
        for name, predicate in with_status.items()
        if status_set(predicate) != set(EXPECTED[name])
    }
    assert not wrong, f"index predicate vs code set: {wrong}"
