"""Bare rows for database-level tests: a user, a flow version, a run and its pending steps.

`insert_run(conn, nodes)` inserts them with plain SQL (no engine code) and returns the run id and the
step id of each node; used by test_transition_guard.py and test_runtxn.py. `one_row(cursor)` is
the row a query must return (the other support modules' single-row reads).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg


def one_row(cursor: psycopg.Cursor[Any]) -> Any:
    """The row `cursor`'s query returned; a query that returned none fails the test here."""
    row = cursor.fetchone()
    assert row is not None, "the query returned no row"
    return row


def insert_run(conn: psycopg.Connection[Any], nodes: list[str]) -> tuple[str, dict[str, int]]:
    (owner,) = one_row(
        conn.execute(
            "INSERT INTO users (email, name, roles) VALUES (%s, 'rows', ARRAY['editor']) RETURNING id",
            (f"rows-{uuid.uuid4().hex[:8]}@example.invalid",),
        )
    )
    (flow,) = one_row(
        conn.execute(
            "INSERT INTO flows (owner_id, name, definition, version) VALUES (%s, 'rows', '{}', 1)"
            " RETURNING id",
            (owner,),
        )
    )
    conn.execute(
        "INSERT INTO flow_versions (flow_id, version, definition) VALUES (%s, 1, '{}')", (flow,)
    )
    (run,) = one_row(
        conn.execute(
            "INSERT INTO runs (flow_id, flow_version, owner_id) VALUES (%s, 1, %s) RETURNING id",
            (flow, owner),
        )
    )
    steps = {}
    for node in nodes:
        (step,) = one_row(
            conn.execute(
                "INSERT INTO steps (run_id, node_id, node_type) VALUES (%s, %s, 'noop') RETURNING id",
                (run, node),
            )
        )
        steps[node] = int(step)
    return str(run), steps
