"""What travels through the queue: a step pointer, as the engine's outbox rows describe it.

`StepPointer` is the shape every publisher accepts (an outbox row's id and the step it points at);
the engine's `OutboxMessage` (`engine/runtxn.py`) and the relay's `OutboxRow` both have it, so the
queue never imports the engine. `StepMessage` is the JSON body on the wire (no outbox id: a consumer
needs only the step and its fencing token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec


class StepPointer(Protocol):
    """An outbox row: `id` to delete it once published, and the step it wakes."""

    @property
    def id(self) -> int: ...

    @property
    def run_id(self) -> str: ...

    @property
    def step_id(self) -> int: ...

    @property
    def token(self) -> int: ...


# OutboxRow (a table row) and StepMessage (the wire body) list alike fields on purpose.
@dataclass(frozen=True)
class OutboxRow:
    """An outbox row read back by the relay (`queue/outbox.py: relay_once`)."""

    id: int
    run_id: str
    step_id: int
    token: int


class StepMessage(msgspec.Struct, frozen=True):
    """The message body: which step to claim, with the fencing token it was readied with."""

    run_id: str
    step_id: int
    token: int


def encode_message(m: StepPointer) -> bytes:
    return msgspec.json.encode(StepMessage(m.run_id, m.step_id, m.token))


def decode_message(body: bytes) -> StepMessage:
    return msgspec.json.decode(body, type=StepMessage)
