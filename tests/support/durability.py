"""Waiting for runs and checking them after crashes, straight from PostgreSQL (the source of truth).

A crash test starts runs, breaks something, then calls `wait_runs_terminal(conn, run_ids)` (bounded,
polls the `runs` table, not the API, which may be down) and `assert_runs_durable(conn, expected, sink)`:
every run ended in its expected state, its event log is consistent (`checks.py`), no step committed
twice, and every HTTP step called the sink at most once per attempt under its one Idempotency-Key.
`wait_for` and `wait_step` are the bounded polls used to time a kill.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from tests.support.checks import assert_event_log_consistent, assert_no_double_success
from tests.support.dbrows import one_row
from tests.support.sink import Sink
from tests.support.stack import Proc

TERMINAL = ("succeeded", "failed", "cancelled")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll `predicate()` until it holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def step_row(conn: psycopg.Connection[Any], run_id: str, node_id: str) -> dict[str, Any]:
    cur = conn.execute(
        """SELECT status, attempt, max_attempts, lease_owner FROM steps
           WHERE run_id = %s AND node_id = %s AND item_index = 0""",
        (run_id, node_id),
    )
    row = cur.fetchone()
    assert row is not None, f"run {run_id} has no step {node_id}"
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def wait_step(
    conn: psycopg.Connection[Any],
    run_id: str,
    node_id: str,
    statuses: Iterable[str],
    timeout: float = 20,
) -> None:
    wanted = set(statuses)
    wait_for(
        lambda: step_row(conn, run_id, node_id)["status"] in wanted,
        timeout,
        f"step {node_id} of run {run_id} to be {sorted(wanted)}",
    )


def describe_run(conn: psycopg.Connection[Any], run_id: str) -> str:
    rows = conn.execute(
        """SELECT node_id, status, attempt FROM steps WHERE run_id = %s ORDER BY id""", (run_id,)
    ).fetchall()
    run = conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()
    status = run[0] if run is not None else "missing"
    return f"run {run_id} {status}: " + ", ".join(f"{n}={s}/{a}" for n, s, a in rows)


def wait_runs_terminal(
    conn: psycopg.Connection[Any], run_ids: Iterable[str], timeout: float = 30
) -> dict[str, str]:
    """Wait until every run is succeeded, failed or cancelled; returns their statuses."""
    ids = list(run_ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = conn.execute(
            "SELECT id::text, status FROM runs WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
        statuses = dict(rows)
        live = [r for r in ids if statuses.get(r) not in TERMINAL]
        if not live:
            return statuses
        if time.monotonic() > deadline:
            detail = "\n".join(describe_run(conn, r) for r in live[:10])
            raise TimeoutError(
                f"{len(live)}/{len(ids)} runs not terminal after {timeout:g}s:\n{detail}"
            )
        time.sleep(0.2)


def http_steps(conn: psycopg.Connection[Any], run_id: str) -> list[tuple[str, int, int]]:
    """(node_id, item_index, attempt) of the run's http_request steps."""
    rows = conn.execute(
        """SELECT node_id, item_index, attempt FROM steps
           WHERE run_id = %s AND node_type = 'http_request'""",
        (run_id,),
    ).fetchall()
    return [(n, i, a) for n, i, a in rows]


def assert_runs_durable(
    conn: psycopg.Connection[Any], expected: dict[str, str], sink: Sink | None = None
) -> None:
    """The post-crash contract for every run: expected end state, clean log, effects <= attempts."""
    for run_id, want in expected.items():
        (status,) = one_row(conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)))
        assert status == want, f"expected {want}: {describe_run(conn, run_id)}"
        assert_event_log_consistent(conn, run_id)
        assert_no_double_success(conn, run_id)
        if sink is None:
            continue
        for node_id, item, attempt in http_steps(conn, run_id):
            calls = sink.calls[f"{run_id}:{node_id}:{item}"]
            assert (
                calls <= attempt
            ), f"{run_id}:{node_id}: {calls} sink calls for {attempt} attempts"


def succeeded_events(conn: psycopg.Connection[Any], run_id: str, node_id: str) -> int:
    (n,) = one_row(
        conn.execute(
            """SELECT count(*) FROM run_events WHERE run_id = %s AND kind = 'step' AND node_id = %s
           AND to_status = 'succeeded'""",
            (run_id, node_id),
        )
    )
    return int(n)


def outbox_rows(conn: psycopg.Connection[Any], run_id: str, node_id: str | None = None) -> int:
    """Unpublished (or published but not yet deleted) pointers of a run, or of one of its steps."""
    (n,) = one_row(
        conn.execute(
            """SELECT count(*) FROM outbox o JOIN steps s ON s.id = o.step_id
           WHERE o.run_id = %s AND (%s::text IS NULL OR s.node_id = %s)""",
            (run_id, node_id, node_id),
        )
    )
    return int(n)


def registered(conn: psycopg.Connection[Any], proc: Proc) -> bool:
    """The process is up: it wrote its row in `processes` (its loops start right after)."""
    assert proc.popen is not None
    row = conn.execute("SELECT 1 FROM processes WHERE pid = %s", (proc.popen.pid,)).fetchone()
    return row is not None
