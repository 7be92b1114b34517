"""SQL for user secrets (rows hold only ciphertext + nonce; `auth/secrets.py` does the crypto).

The API's secret routes call `create_secret` (None when the name exists), `list_secrets` (names and
timestamps only), `update_secret` and `delete_secret` (None/False when absent). The worker calls
`load_secrets(conn, owner_id, names)` for just the names a node's templates reference.
"""

from __future__ import annotations

from typing import Any

from flowstudio.store.db import Conn

PUBLIC_COLS = "name, created_at, updated_at"


async def create_secret(
    conn: Conn, owner_id: str, name: str, ciphertext: bytes, nonce: bytes
) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"""INSERT INTO secrets (owner_id, name, ciphertext, nonce) VALUES (%s, %s, %s, %s)
            ON CONFLICT (owner_id, name) DO NOTHING RETURNING {PUBLIC_COLS}""",
        (owner_id, name, ciphertext, nonce),
    )
    return await cur.fetchone()


async def list_secrets(conn: Conn, owner_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {PUBLIC_COLS} FROM secrets WHERE owner_id = %s ORDER BY name", (owner_id,)
    )
    return await cur.fetchall()


async def update_secret(
    conn: Conn, owner_id: str, name: str, ciphertext: bytes, nonce: bytes
) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"""UPDATE secrets SET ciphertext = %s, nonce = %s, updated_at = now()
            WHERE owner_id = %s AND name = %s RETURNING {PUBLIC_COLS}""",
        (ciphertext, nonce, owner_id, name),
    )
    return await cur.fetchone()


# store/shares.py and store/schedules.py read and delete rows the same way: one short query each.
async def delete_secret(conn: Conn, owner_id: str, name: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM secrets WHERE owner_id = %s AND name = %s", (owner_id, name)
    )
    return cur.rowcount > 0


async def load_secrets(conn: Conn, owner_id: str, names: list[str]) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT name, ciphertext, nonce FROM secrets WHERE owner_id = %s AND name = ANY(%s)",
        (owner_id, names),
    )
    return await cur.fetchall()


async def load_run_secrets(
    conn: Conn, flow_id: Any, runner_id: Any, names: list[str]
) -> list[dict[str, Any]]:
    """The FLOW owner's secrets among `names`, each with `allowed`: true when the runner is the flow's
    owner, else only when the owner bound the name to the flow and the runner may still run it (a
    'run' share or the admin role) and the flow is not deleted. The runner's own secrets are never
    read for another owner's flow (`worker/secret_values.py`)."""
    cur = await conn.execute(
        """SELECT s.name, s.ciphertext, s.nonce, f.owner_id::text AS owner_id,
                  (f.owner_id = %(runner)s::uuid OR (
                     f.deleted_at IS NULL
                     AND EXISTS (SELECT 1 FROM flow_secret_bindings b
                                 WHERE b.flow_id = f.id AND b.name = s.name)
                     AND (EXISTS (SELECT 1 FROM flow_shares sh
                                  WHERE sh.flow_id = f.id AND sh.user_id = %(runner)s::uuid
                                    AND sh.permission = 'run')
                          OR EXISTS (SELECT 1 FROM users u WHERE u.id = %(runner)s::uuid
                                       AND 'admin' = ANY(u.roles))))) AS allowed
           FROM flows f JOIN secrets s ON s.owner_id = f.owner_id AND s.name = ANY(%(names)s)
           WHERE f.id = %(flow)s::uuid""",
        {"flow": flow_id, "runner": runner_id, "names": names},
    )
    return await cur.fetchall()
