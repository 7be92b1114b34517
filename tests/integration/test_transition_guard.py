"""The database refuses illegal run/step/batch transitions by itself (0009's WHEN-clause triggers, 0021).

Builds one run with one step (and a batch) inside a transaction that is rolled back, then tries every (from, to)
status pair with plain UPDATEs: the legal pairs of the Python machines (`engine/states.py`) pass, every
other pair raises CheckViolation, and the `state_transitions` table equals the machines. A pair legal
inside one operation only (`only_in`, migration 0030: step pending -> running, the eager claim of
`step_commit_success`) is refused to a plain UPDATE and passes while `flowstudio.<only_in>` is on.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from flowstudio.engine.states import (
    BATCH_MACHINE,
    RUN_MACHINE,
    STEP_MACHINE,
    BatchStatus,
    RunStatus,
    StepStatus,
    allowed_pairs,
)
from tests.support.dbrows import insert_run

Conn = psycopg.Connection[Any]
ENTITY = {"steps": "step", "runs": "run", "batches": "batch"}


def one_run(db: Conn) -> tuple[str, int]:
    run, steps = insert_run(db, ["n"])
    return run, steps["n"]


def one_batch(db: Conn, run: str) -> Any:
    row = db.execute(
        """INSERT INTO batches (flow_id, flow_version, owner_id)
           SELECT flow_id, flow_version, owner_id FROM runs WHERE id = %s RETURNING id""",
        (run,),
    ).fetchone()
    assert row is not None
    return row[0]


def try_move(
    db: Conn, table: str, row_id: Any, source: str, dest: str, setting: str | None = None
) -> bool:
    """Force the row to `source` (triggers off for the set-up only), then move it to `dest` (with
    the transaction-local `setting` on, if given)."""
    with db.transaction(force_rollback=True):
        db.execute("SET LOCAL session_replication_role = replica")  # set-up without triggers
        db.execute(f"UPDATE {table} SET status = %s WHERE id = %s", (source, row_id))
        db.execute("SET LOCAL session_replication_role = origin")
        if setting:
            db.execute("SELECT set_config(%s, 'on', true)", (setting,))
        try:
            with db.transaction():
                db.execute(f"UPDATE {table} SET status = %s WHERE id = %s", (dest, row_id))
        except psycopg.errors.CheckViolation as exc:
            assert f"illegal {ENTITY[table]} transition {source} -> {dest}" in str(exc)
            return False
    return True


def test_database_refuses_exactly_the_illegal_transitions(db: Conn) -> None:
    with db.transaction(force_rollback=True):
        run, step = one_run(db)
        for entity, table, row_id, machine, statuses in (
            ("step", "steps", step, STEP_MACHINE, StepStatus),
            ("run", "runs", run, RUN_MACHINE, RunStatus),
            ("batch", "batches", one_batch(db, run), BATCH_MACHINE, BatchStatus),
        ):
            legal = allowed_pairs(machine)
            rows = db.execute(
                """SELECT from_status, to_status, only_in FROM state_transitions
                   WHERE entity = %s""",
                (entity,),
            ).fetchall()
            assert {(r[0], r[1]) for r in rows} == legal
            only_in = {(r[0], r[1]): r[2] for r in rows if r[2]}
            for source in statuses:
                for dest in statuses:
                    pair = (source.value, dest.value)
                    if source == dest:
                        continue
                    moved = try_move(db, table, row_id, *pair)
                    assert moved is (pair in legal and pair not in only_in), (entity, pair)
                    if pair in only_in:
                        setting = f"flowstudio.{only_in[pair]}"
                        assert try_move(db, table, row_id, *pair, setting=setting), pair
                        assert not try_move(db, table, row_id, *pair, setting="flowstudio.other")
        assert only_in == {}  # (batches: the last entity) and the step's one guarded pair:
        guarded = db.execute(
            "SELECT entity, from_status, to_status, only_in FROM state_transitions"
            " WHERE only_in IS NOT NULL"
        ).fetchall()
        assert guarded == [("step", "pending", "running", "eager_claim")]


@pytest.mark.parametrize("same", ["running", "succeeded"])
def test_an_update_that_keeps_the_status_is_not_a_transition(db: Conn, same: str) -> None:
    with db.transaction(force_rollback=True):
        _, step = one_run(db)
        assert try_move(db, "steps", step, same, same)
