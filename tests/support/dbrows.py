"""Bare rows for database-level tests: a user, a flow version, a run and its pending steps.

`insert_run(conn, nodes)` inserts them with plain SQL (no engine code) and returns the run id and the
step id of each node; used by test_transition_guard.py and test_runtxn.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg


def insert_run(conn: psycopg.Connection[Any], nodes: list[str]) -> tuple[str, dict[str, int]]:
    (owner,) = conn.execute(
        "INSERT INTO users (email, name, roles) VALUES (%s, 'rows', ARRAY['editor']) RETURNING id",
        (f"rows-{uuid.uuid4().hex[:8]}@example.invalid",),
    ).fetchone()
    (flow,) = conn.execute(
        "INSERT INTO flows (owner_id, name, definition, version) VALUES (%s, 'rows', '{}', 1)"
        " RETURNING id",
        (owner,),
    ).fetchone()
    conn.execute(
        "INSERT INTO flow_versions (flow_id, version, definition) VALUES (%s, 1, '{}')", (flow,)
    )
    (run,) = conn.execute(
        "INSERT INTO runs (flow_id, flow_version, owner_id) VALUES (%s, 1, %s) RETURNING id",
        (flow, owner),
    ).fetchone()
    steps = {}
    for node in nodes:
        (step,) = conn.execute(
            "INSERT INTO steps (run_id, node_id, node_type) VALUES (%s, %s, 'noop') RETURNING id",
            (run, node),
        ).fetchone()
        steps[node] = int(step)
    return str(run), steps
