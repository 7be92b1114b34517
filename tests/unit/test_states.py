"""The run/step/batch machines checked against statements written independently of `engine/states.py`.

`DOCUMENTED_STEP` / `DOCUMENTED_RUN` below are the machines written out by hand, edge by edge, from the
README's description (a step is readied or skipped from pending, claimed, retried with backoff, parked
waiting, woken, failed, released by the reaper, cancelled while live, reopened by resume; a run starts,
waits, wakes, ends, and only a failed or cancelled run resumes; a batch loads, runs, ends). The engine's Python table and the SQL
`state_transitions` table (parsed from migrations/*.sql, not imported) must each equal them, so a change
to one table that is not made to the other two fails here. `test_transition_guard.py` tries every pair
against the database's triggers; the moves' (sources, dest) pairs are checked for the engine's triggers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowstudio.engine.states import (
    BATCH_MACHINE,
    RUN_MACHINE,
    RUN_TERMINAL,
    STEP_MACHINE,
    STEP_TERMINAL,
    BatchStatus,
    IllegalTransition,
    RunStatus,
    StepStatus,
    allowed_pairs,
    batch_move,
    is_legal,
    run_move,
    step_move,
)

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# Written out by hand (not derived from the code): (from, to) -> why it exists.
DOCUMENTED_STEP: dict[tuple[str, str], str] = {
    ("pending", "ready"): "all upstream steps are done",
    ("pending", "skipped"): "on an untaken condition branch",
    ("ready", "running"): "a worker claims it (lease + fencing token)",
    ("pending", "running"): "readied and claimed at once by the success that readied it (one-call "
    "commit; the event log still shows pending -> ready -> running)",
    ("running", "succeeded"): "committed",
    ("running", "retrying"): "a failed attempt with attempts left (backoff timer)",
    ("retrying", "ready"): "the backoff timer fired",
    ("running", "waiting"): "delay / wait_for_signal / agent waiting for its tools",
    ("waiting", "succeeded"): "the timer or signal completed it",
    ("waiting", "ready"): "an agent whose tool calls finished runs its next turn",
    ("running", "failed"): "attempts exhausted or not retryable",
    ("waiting", "failed"): "a wait that ends in an error",
    ("retrying", "failed"): "a retry that can no longer run",
    ("running", "ready"): "the reaper released an expired lease",
    ("pending", "cancelled"): "run cancelled",
    ("ready", "cancelled"): "run cancelled",
    ("running", "cancelled"): "run cancelled (the worker loses its lease)",
    ("retrying", "cancelled"): "run cancelled",
    ("waiting", "cancelled"): "run cancelled",
    ("failed", "pending"): "resume re-runs a failed step",
    ("cancelled", "pending"): "resume re-runs a cancelled step",
}
DOCUMENTED_RUN: dict[tuple[str, str], str] = {
    ("queued", "running"): "its first step is claimed",
    ("running", "waiting"): "only durable waits are live",
    ("waiting", "running"): "a wait ended",
    ("running", "succeeded"): "every step terminal, output produced",
    ("waiting", "succeeded"): "the last wait completed the run",
    ("queued", "failed"): "failed before starting",
    ("running", "failed"): "a step failed",
    ("waiting", "failed"): "a wait failed (e.g. signal timeout without a timeout edge)",
    ("queued", "cancelled"): "cancel",
    ("running", "cancelled"): "cancel",
    ("waiting", "cancelled"): "cancel",
    ("failed", "queued"): "resume",
    ("cancelled", "queued"): "resume",
}

DOCUMENTED_BATCH: dict[tuple[str, str], str] = {
    ("loading", "running"): "every item is loaded; the dispatcher starts its runs",
    ("running", "succeeded"): "no run of the batch is live any more (failed runs count as done)",
    ("loading", "failed"): "loading failed, or the API process loading it died",
    ("loading", "cancelled"): "cancel while loading",
    ("running", "cancelled"): "cancel",
}


def sql_pairs(entity: str) -> set[tuple[str, str]]:
    """The pairs the migrations INSERT into `state_transitions` (read as text, not via the engine)."""
    text = "".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))
    inserts = re.findall(r"INSERT INTO state_transitions[^;]*;", text)
    assert inserts, "no INSERT INTO state_transitions found in migrations/"
    pairs: set[tuple[str, str]] = set()
    for stmt in inserts:
        pairs |= set(re.findall(rf"\('{entity}', '(\w+)', '(\w+)'\)", stmt))
    return pairs


def diff(name: str, got: set[tuple[str, str]], want: set[tuple[str, str]]) -> str:
    return f"{name}: extra {sorted(got - want)}, missing {sorted(want - got)}"


@pytest.mark.parametrize(
    ("entity", "machine", "documented"),
    [
        ("step", STEP_MACHINE, DOCUMENTED_STEP),
        ("run", RUN_MACHINE, DOCUMENTED_RUN),
        ("batch", BATCH_MACHINE, DOCUMENTED_BATCH),
    ],
)
def test_python_and_sql_tables_equal_the_documented_machine(
    entity: str, machine: object, documented: dict[tuple[str, str], str]
) -> None:
    want = set(documented)
    python = allowed_pairs(machine)  # type: ignore[arg-type]
    assert python == want, diff(f"engine/states.py {entity}", python, want)
    sql = sql_pairs(entity)
    assert sql == want, diff(f"migrations state_transitions {entity}", sql, want)


@pytest.mark.parametrize(
    ("entity", "statuses", "documented"),
    [
        ("step", StepStatus, DOCUMENTED_STEP),
        ("run", RunStatus, DOCUMENTED_RUN),
        ("batch", BatchStatus, DOCUMENTED_BATCH),
    ],
)
def test_is_legal_answers_the_documented_machine_for_every_pair(
    entity: str, statuses: type, documented: dict[tuple[str, str], str]
) -> None:
    wrong = [
        (a.value, b.value)
        for a in statuses
        for b in statuses
        if is_legal(entity, a.value, b.value) != ((a.value, b.value) in documented)
    ]
    assert not wrong, f"is_legal({entity}) disagrees with the documented machine on {wrong}"


def test_statuses_are_the_contracts_and_committed_states_are_final() -> None:
    assert [s.value for s in StepStatus] == [
        "pending", "ready", "running", "retrying", "waiting",
        "succeeded", "failed", "skipped", "cancelled",
    ]  # fmt: skip
    assert [s.value for s in RunStatus] == [
        "queued", "running", "waiting", "succeeded", "failed", "cancelled",
    ]  # fmt: skip
    assert {"succeeded", "failed", "skipped", "cancelled"} == STEP_TERMINAL
    assert {"succeeded", "failed", "cancelled"} == RUN_TERMINAL
    assert [s.value for s in BatchStatus] == [
        "loading", "running", "succeeded", "failed", "cancelled",
    ]  # fmt: skip
    # A committed or skipped step and a succeeded run never move again (in either table).
    # A batch never moves out of an ended state.
    for entity, machine, frozen in (
        ("step", STEP_MACHINE, ("succeeded", "skipped")),
        ("run", RUN_MACHINE, ("succeeded",)),
        ("batch", BATCH_MACHINE, ("succeeded", "failed", "cancelled")),
    ):
        for pair in allowed_pairs(machine) | sql_pairs(entity):
            assert pair[0] not in frozen, f"{entity} {pair} moves out of a final state"


@pytest.mark.parametrize(
    ("move", "trigger", "sources", "dest"),
    [
        (step_move, "ready", {"pending"}, "ready"),
        (step_move, "skip", {"pending"}, "skipped"),
        (step_move, "claim", {"ready"}, "running"),
        (step_move, "succeed", {"running"}, "succeeded"),
        (step_move, "retry", {"running"}, "retrying"),
        (step_move, "fire_retry", {"retrying"}, "ready"),
        (step_move, "wait", {"running"}, "waiting"),
        (step_move, "finish_wait", {"waiting"}, "succeeded"),
        (step_move, "wake", {"waiting"}, "ready"),
        (step_move, "fail", {"running", "waiting", "retrying"}, "failed"),
        (step_move, "release", {"running"}, "ready"),
        (
            step_move,
            "cancel",
            {"pending", "ready", "running", "retrying", "waiting"},
            "cancelled",
        ),
        (step_move, "reopen", {"failed", "cancelled"}, "pending"),
        (run_move, "start", {"queued"}, "running"),
        (run_move, "wait", {"running"}, "waiting"),
        (run_move, "wake", {"waiting"}, "running"),
        (run_move, "succeed", {"running", "waiting"}, "succeeded"),
        (run_move, "fail", {"queued", "running", "waiting"}, "failed"),
        (run_move, "cancel", {"queued", "running", "waiting"}, "cancelled"),
        (run_move, "resume", {"failed", "cancelled"}, "queued"),
        (batch_move, "loaded", {"loading"}, "running"),
        (batch_move, "finish", {"running"}, "succeeded"),
        (batch_move, "fail", {"loading"}, "failed"),
        (batch_move, "cancel", {"loading", "running"}, "cancelled"),
    ],
)
def test_each_named_move_gives_its_documented_sources_and_destination(
    move: object, trigger: str, sources: set[str], dest: str
) -> None:
    got_sources, got_dest = move(trigger)  # type: ignore[operator]
    assert (set(got_sources), got_dest) == (sources, dest)
    assert len(got_sources) == len(set(got_sources))


def test_unknown_trigger_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        step_move("teleport")
    with pytest.raises(IllegalTransition):
        run_move("teleport")
    with pytest.raises(IllegalTransition):
        batch_move("teleport")


def test_every_listed_node_family_has_a_module() -> None:
    import importlib.util

    from flowstudio.nodes.registry import FAMILIES

    missing = [f for f in FAMILIES if importlib.util.find_spec(f"flowstudio.nodes.{f}") is None]
    assert not missing, f"FAMILIES lists modules that do not exist: {missing}"


def test_status_literal_and_sql_sets_follow_the_enums() -> None:
    from typing import get_args

    from flowstudio.store.statuses import BATCH_ENDED, RUN_ENDED, BatchStatusName, sql_list

    assert get_args(BatchStatusName) == tuple(s.value for s in BatchStatus)
    assert set(RUN_ENDED) == RUN_TERMINAL
    assert set(BATCH_ENDED) == {"succeeded", "failed", "cancelled"}
    assert sql_list(["a", "b"]) == "('a', 'b')"
    with pytest.raises(ValueError):
        sql_list(["x'; DROP TABLE runs; --"])  # only identifiers (status constants) are accepted
