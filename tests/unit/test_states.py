"""The run/step machines: the Python table, the SQL table and the guarded moves agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowstudio.engine.states import (
    RUN_MACHINE,
    STEP_MACHINE,
    IllegalTransition,
    RunStatus,
    StepStatus,
    allowed_pairs,
    is_legal,
    run_move,
    step_move,
)

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def sql_pairs(entity: str) -> set[tuple[str, str]]:
    text = "".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))
    return set(re.findall(rf"\('{entity}', '(\w+)', '(\w+)'\)", text))


def test_sql_transition_table_equals_the_python_machines() -> None:
    assert sql_pairs("step") == allowed_pairs(STEP_MACHINE)
    assert sql_pairs("run") == allowed_pairs(RUN_MACHINE)


@pytest.mark.parametrize("source", [s.value for s in StepStatus])
@pytest.mark.parametrize("dest", [s.value for s in StepStatus])
def test_every_step_pair_is_either_allowed_or_refused(source: str, dest: str) -> None:
    legal = (source, dest) in allowed_pairs(STEP_MACHINE)
    assert is_legal("step", source, dest) is legal
    if source in ("succeeded", "skipped"):
        assert not legal, "a committed/skipped step never moves again"


def test_terminal_runs_only_resume() -> None:
    for status in ("succeeded",):
        assert not any(is_legal("run", status, d.value) for d in RunStatus)
    assert {d for (s, d) in allowed_pairs(RUN_MACHINE) if s in ("failed", "cancelled")} == {
        "queued"
    }


def test_moves_give_sources_and_destination() -> None:
    assert step_move("claim") == (["ready"], "running")
    assert step_move("succeed") == (["running"], "succeeded")
    assert sorted(step_move("cancel")[0]) == sorted(
        ["pending", "ready", "running", "retrying", "waiting"]
    )
    assert run_move("start") == (["queued"], "running")


def test_unknown_trigger_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        step_move("teleport")


def test_every_listed_node_family_has_a_module() -> None:
    import importlib.util

    from flowstudio.nodes.registry import FAMILIES

    missing = [f for f in FAMILIES if importlib.util.find_spec(f"flowstudio.nodes.{f}") is None]
    assert not missing, f"FAMILIES lists modules that do not exist: {missing}"
