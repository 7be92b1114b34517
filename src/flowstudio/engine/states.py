"""The run, step and batch state machines: the one table of allowed transitions.

The status values and the named sets (live, terminal, ...) come from `store/statuses.py` (re-exported
here). The machines are declared with the `transitions` library (states + triggers). The engine never
sets a status directly: `step_move(trigger)` / `run_move(trigger)` / `batch_move(trigger)` give the
(sources, dest) pair that the guarded SQL UPDATE uses (`... SET status = dest WHERE status =
ANY(sources)`), so an illegal or duplicate move changes no row. Migrations (0001, 0008; 0021 for
batches) load the same pairs into `state_transitions`, where a trigger refuses any other status
change; `tests/unit/test_states.py` checks the two tables are identical.
"""

from __future__ import annotations

from enum import Enum

from transitions import Machine

from flowstudio.store.statuses import (
    RUN_LIVE,
    RUN_TERMINAL,
    STEP_LIVE,
    STEP_TERMINAL,
    BatchStatus,
    RunStatus,
    StepStatus,
)

__all__ = [
    "BATCH_MACHINE",
    "RUN_LIVE",
    "RUN_MACHINE",
    "RUN_TERMINAL",
    "STEP_LIVE",
    "STEP_MACHINE",
    "STEP_TERMINAL",
    "BatchStatus",
    "IllegalTransition",
    "RunStatus",
    "StepStatus",
    "allowed_pairs",
    "batch_move",
    "is_legal",
    "run_move",
    "step_move",
]

# The three tables below are alike in shape by design: one row per named move.
# trigger, sources, dest -- the only place step moves are defined.
STEP_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "ready", "source": ["pending"], "dest": "ready"},
    {"trigger": "skip", "source": ["pending"], "dest": "skipped"},
    {"trigger": "claim", "source": ["ready"], "dest": "running"},
    # made ready and claimed in one update (migration 0027's one-call commit; logged as both moves)
    {"trigger": "ready_and_claim", "source": ["pending"], "dest": "running"},
    {"trigger": "succeed", "source": ["running"], "dest": "succeeded"},
    {"trigger": "retry", "source": ["running"], "dest": "retrying"},
    {"trigger": "fire_retry", "source": ["retrying"], "dest": "ready"},
    {"trigger": "wait", "source": ["running"], "dest": "waiting"},
    {"trigger": "finish_wait", "source": ["waiting"], "dest": "succeeded"},
    {"trigger": "wake", "source": ["waiting"], "dest": "ready"},
    {"trigger": "fail", "source": ["running", "waiting", "retrying"], "dest": "failed"},
    {"trigger": "release", "source": ["running"], "dest": "ready"},
    {"trigger": "cancel", "source": list(STEP_LIVE), "dest": "cancelled"},
    {"trigger": "reopen", "source": ["failed", "cancelled"], "dest": "pending"},
]

RUN_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "start", "source": ["queued"], "dest": "running"},
    {"trigger": "wait", "source": ["running"], "dest": "waiting"},
    {"trigger": "wake", "source": ["waiting"], "dest": "running"},
    {"trigger": "succeed", "source": ["running", "waiting"], "dest": "succeeded"},
    {"trigger": "fail", "source": list(RUN_LIVE), "dest": "failed"},
    {"trigger": "cancel", "source": list(RUN_LIVE), "dest": "cancelled"},
    {"trigger": "resume", "source": ["failed", "cancelled"], "dest": "queued"},
]

# The batch lifecycle: loaded in chunks, dispatched until no run is live; a loader that dies fails it.
BATCH_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "loaded", "source": ["loading"], "dest": "running"},
    {"trigger": "finish", "source": ["running"], "dest": "succeeded"},
    {"trigger": "fail", "source": ["loading"], "dest": "failed"},
    {"trigger": "cancel", "source": ["loading", "running"], "dest": "cancelled"},
]


def _machine(statuses: type[Enum], transitions: list[dict[str, object]], initial: str) -> Machine:
    states = [s.value for s in statuses]
    return Machine(
        model=None, states=states, transitions=transitions, initial=initial, auto_transitions=False
    )


STEP_MACHINE = _machine(StepStatus, STEP_TRANSITIONS, "pending")
RUN_MACHINE = _machine(RunStatus, RUN_TRANSITIONS, "queued")
BATCH_MACHINE = _machine(BatchStatus, BATCH_TRANSITIONS, "loading")
MACHINES = {"step": STEP_MACHINE, "run": RUN_MACHINE, "batch": BATCH_MACHINE}


class IllegalTransition(Exception):
    """A trigger that the machine does not define (a programming error, not a lost race)."""


def _move(machine: Machine, trigger: str) -> tuple[list[str], str]:
    events = machine.events
    if trigger not in events:
        raise IllegalTransition(f"unknown trigger {trigger!r}")
    sources: list[str] = []
    dest = ""
    for source, transitions in events[trigger].transitions.items():
        for t in transitions:
            sources.append(source)
            dest = str(t.dest)
    return sources, dest


def step_move(trigger: str) -> tuple[list[str], str]:
    """(allowed source states, destination) of a step trigger."""
    return _move(STEP_MACHINE, trigger)


def run_move(trigger: str) -> tuple[list[str], str]:
    """(allowed source states, destination) of a run trigger."""
    return _move(RUN_MACHINE, trigger)


def batch_move(trigger: str) -> tuple[list[str], str]:
    """(allowed source states, destination) of a batch trigger."""
    return _move(BATCH_MACHINE, trigger)


def allowed_pairs(machine: Machine) -> set[tuple[str, str]]:
    """Every (from, to) pair the machine allows; the DB's `state_transitions` must equal this."""
    pairs: set[tuple[str, str]] = set()
    for event in machine.events.values():
        for source, transitions in event.transitions.items():
            for t in transitions:
                pairs.add((source, str(t.dest)))
    return pairs


def is_legal(entity: str, source: str, dest: str) -> bool:
    """Whether `entity` ("step", "run" or "batch") may move from `source` to `dest`."""
    return (source, dest) in allowed_pairs(MACHINES[entity])
