"""SQL of chat memory (`chat_messages`): the `chat_memory` node appends turns and reads the last ones.

`append_messages` is idempotent per (owner, step idempotency key, position): a step that runs again
after a crash appends nothing twice. `last_messages` returns a session's newest `limit` turns, oldest
first (what a chat model is given as history).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowstudio.store.db import Conn

Turn = tuple[str, str]  # (role, content)
# Appends one turn; a re-run of the same step (same key and position) appends nothing.
APPEND_MESSAGE = """INSERT INTO chat_messages (owner_id, session_id, role, content, step_key, position)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (owner_id, step_key, position) DO NOTHING"""
# The session's newest `limit` turns, oldest first.
LAST_MESSAGES = """SELECT role, content FROM (
        SELECT id, role, content FROM chat_messages
        WHERE owner_id = %s AND session_id = %s ORDER BY id DESC LIMIT %s) last
    ORDER BY id"""


async def append_messages(
    conn: Conn, owner_id: str, session_id: str, step_key: str, messages: Sequence[Turn]
) -> None:
    """Append (role, content) turns in one transaction, positions 0.. under `step_key`."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            APPEND_MESSAGE,
            [
                (owner_id, session_id, role, content, step_key, i)
                for i, (role, content) in enumerate(messages)
            ],
        )


async def last_messages(
    conn: Conn, owner_id: str, session_id: str, limit: int
) -> list[dict[str, Any]]:
    """The session's last `limit` messages as {"role", "content"}, oldest first."""
    cur = await conn.execute(LAST_MESSAGES, (owner_id, session_id, limit))
    return [{"role": r["role"], "content": r["content"]} for r in await cur.fetchall()]
