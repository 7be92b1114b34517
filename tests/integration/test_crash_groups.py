"""The crash matrix's group writes: a worker SIGKILLed inside a group commit or a group claim.

A worker's slots write what is ready together in one transaction (`worker/grouping.py`); each
test queues 8 runs before the worker starts so that their 8 slots meet in one group, and the worker
kills itself inside the group's write: between its two messages (crash points
`group_commit.between_statements`, `group_claim.between_statements`), or, for a group commit of
chain steps only (one statement, its own transaction), right before that statement
(`group_commit.before_one_statement`). Nothing of the group may commit, and everything then finishes
on a new worker with the usual checks (`support/durability.py`). Both queue backends, as the rest
of the matrix (test_crash_matrix.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.integration.test_crash_matrix import (  # noqa: F401 -- fixture: queue_backend
    assert_crashed,
    queue_backend,
)
from tests.support.client import Api, linear_flow
from tests.support.durability import assert_runs_durable, wait_runs_terminal
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

Creds = tuple[str, str]
Conn = psycopg.Connection[Any]


def crash_inside_a_group(
    stack: Stack,
    credentials: Creds,
    templates: int,
    crashpoint: str,
    env: dict[str, str] | None = None,
) -> list[str]:
    """8 runs of input -> `templates` templates -> output queued before a worker of 8 slots
    starts (a 50 ms window: they meet in one group); that worker SIGKILLs itself at `crashpoint`.
    Returns the runs."""
    stack.start_api()
    stack.start_orchestrator()
    api = Api(stack.base_url, *credentials)
    flow = linear_flow(*[(f"t{i}", "template", {"template": f"t{i}"}) for i in range(templates)])
    flow_id = api.create_flow(flow)["id"]
    tag = uuid.uuid4().hex[:8]
    runs = [api.start_run(flow_id, key=f"group-{tag}-{i}") for i in range(8)]
    doomed = stack.start_worker(
        concurrency=8,
        extra_env={
            "FLOWSTUDIO_CRASHPOINTS": crashpoint,
            "GROUP_COMMIT": "on",
            "GROUP_COMMIT_WINDOW_MS": "50",
            **(env or {}),
        },
    )
    assert_crashed(doomed, timeout=60)
    return runs


def finish_on_a_new_worker(stack: Stack, db: Conn, runs: list[str]) -> None:
    stack.start_worker(concurrency=4, extra_env={"GROUP_COMMIT": "on"})
    wait_runs_terminal(db, runs, timeout=60)
    assert_runs_durable(db, {r: "succeeded" for r in runs})


@pytest.mark.parametrize(
    ("crashpoint", "one_call"),
    [("group_commit.before_one_statement", "on"), ("group_commit.between_statements", "off")],
)
def test_worker_killed_inside_a_group_commit_loses_only_that_group(
    stack: Stack, credentials: Creds, db: Conn, crashpoint: str, one_call: str
) -> None:
    """Group commit: 8 runs are queued before the worker starts, so its 8 slots claim and finish
    their first steps together and commit them as one group; the worker SIGKILLs itself inside
    it: chain steps (one-call commits) are one statement, and it dies right before sending it;
    with ONE_CALL_COMMIT=off each member takes the general path, two messages, and it dies
    between them (locks + moves sent, flush + COMMIT not). Nothing of the group commits: its
    steps run again on a new worker (attempt 2), every run finishes, no step commits twice,
    every event log stays gapless and legal."""
    runs = crash_inside_a_group(stack, credentials, 3, crashpoint, {"ONE_CALL_COMMIT": one_call})
    (rerun_before,) = db.execute(
        "SELECT count(*) FROM steps WHERE run_id = ANY(%s::uuid[]) AND attempt > 1", (runs,)
    ).fetchone()
    assert rerun_before == 0
    finish_on_a_new_worker(stack, db, runs)
    (reran,) = db.execute(
        "SELECT count(*) FROM steps WHERE run_id = ANY(%s::uuid[]) AND attempt = 2", (runs,)
    ).fetchone()
    assert reran >= 2  # the group's members (at least two) were lost together and ran again


def test_worker_killed_inside_a_group_claim_claims_nothing_of_it(
    stack: Stack, credentials: Creds, db: Conn
) -> None:
    """Group claim: 8 runs are queued before the worker starts, so their 8 messages reach its 8
    slots at once and are claimed as one group (a window: none goes alone); the worker SIGKILLs
    itself between the group's two messages (locks + claim moves sent, flush + COMMIT not).
    Nothing of the group commits: every first step is still ready, unleased, its attempt
    unspent; the unacked messages go to a new worker, every run finishes, no step ran twice,
    every event log stays gapless and legal."""
    runs = crash_inside_a_group(stack, credentials, 1, "group_claim.between_statements")
    firsts = db.execute(
        "SELECT status, attempt, lease_owner FROM steps"
        " WHERE run_id = ANY(%s::uuid[]) AND node_id = 'in'",
        (runs,),
    ).fetchall()
    assert [tuple(r) for r in firsts] == [("ready", 0, None)] * 8
    finish_on_a_new_worker(stack, db, runs)
    (max_attempt,) = db.execute(
        "SELECT max(attempt) FROM steps WHERE run_id = ANY(%s::uuid[])", (runs,)
    ).fetchone()
    assert max_attempt == 1  # the lost group's claims spent no attempt: no step ran twice
