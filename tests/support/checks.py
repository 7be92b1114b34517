"""Assertions every durability test makes against PostgreSQL directly (the source of truth).

`assert_event_log_consistent(conn, run_id)`: event seqs are 1..N without gaps; every logged status
change is legal in the engine's machines (and a step's log never skips `ready`) and chains from the
previous status of that step/run; the final logged status of every step and of the run equals its
row. `assert_no_double_success(conn, run_id)`: no step has two `-> succeeded` events (a committed
step never ran again).
"""

from __future__ import annotations

from typing import Any

import psycopg

from flowstudio.engine.states import is_legal
from tests.support.dbrows import one_row


def assert_event_log_consistent(conn: psycopg.Connection[Any], run_id: str) -> None:
    events = conn.execute(
        "SELECT seq, kind, step_id, from_status, to_status FROM run_events WHERE run_id = %s "
        "ORDER BY seq",
        (run_id,),
    ).fetchall()
    seqs = [e[0] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"event seqs not gapless: {seqs}"
    (event_seq,) = one_row(conn.execute("SELECT event_seq FROM runs WHERE id = %s", (run_id,)))
    assert event_seq == len(seqs), f"runs.event_seq={event_seq} but {len(seqs)} events"
    current: dict[Any, str] = {}
    copied: set[Any] = set()  # steps a fork copied from its parent (first event has no from_status)
    steps = conn.execute("SELECT id, status FROM steps WHERE run_id = %s", (run_id,)).fetchall()
    for sid, _ in steps:
        current[("step", sid)] = "pending"
    for seq, kind, step_id, frm, to in events:
        key = ("step", step_id) if kind == "step" else ("run", None)
        if kind == "run" and frm is None:
            assert to == "queued" and key not in current, f"seq {seq}: run created twice"
            current[key] = to
            continue
        if kind not in ("run", "step") or to is None:
            continue
        if kind == "step" and frm is None:
            assert key not in copied, f"seq {seq}: step {step_id} placed twice"
            assert to in ("succeeded", "skipped"), f"seq {seq}: copied step must be committed"
            copied.add(key)
            current[key] = to
            continue
        assert (
            current.get(key) == frm
        ), f"seq {seq}: {key} logged {frm}->{to} but was {current.get(key)}"
        assert is_legal(kind, frm, to), f"seq {seq}: illegal {kind} transition {frm}->{to}"
        # the one-call commit moves a claimed successor pending -> running in one update, but
        # logs it as the two moves it is: the log never skips `ready`
        assert (kind, frm, to) != ("step", "pending", "running"), f"seq {seq}: ready not logged"
        current[key] = to
    for sid, status in steps:
        assert (
            current[("step", sid)] == status
        ), f"step {sid}: log says {current[('step', sid)]}, row {status}"
    (run_status,) = one_row(conn.execute("SELECT status FROM runs WHERE id = %s", (run_id,)))
    assert current[("run", None)] == run_status


def assert_no_double_success(conn: psycopg.Connection[Any], run_id: str) -> None:
    rows = conn.execute(
        """SELECT step_id, count(*) FROM run_events WHERE run_id = %s AND kind = 'step'
           AND to_status = 'succeeded' GROUP BY step_id HAVING count(*) > 1""",
        (run_id,),
    ).fetchall()
    assert not rows, f"steps committed twice: {rows}"


def step_attempts(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT node_id, attempt FROM steps WHERE run_id = %s", (run_id,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}
