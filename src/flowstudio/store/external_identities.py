"""SQL for users authenticated by an external provider (MAXplatform), keyed by (provider, subject).

`user_for_identity(conn, provider=, subject=, email=, name=, roles=)` is called by
`auth.maxplatform.MaxplatformAuth` after the provider vouched for a token:
- a known (provider, subject) is that user: name, roles and (when free) email are synced;
- an unknown subject gets a NEW user, unless the email is taken: then `EmailCollision` is raised and
  the caller refuses the login. Accounts are never merged automatically, so a provider profile that
  claims a local admin's email cannot become (or demote) that admin. The one exception is a row the
  old email-keyed code created for this provider: no password, no identity link yet
  (`legacy external user`), adopted by the first subject that presents its email.
A role change through the sync ends the user's sessions (trigger of migration 0012).
"""

from __future__ import annotations

from typing import Any

from flowstudio.auth.maxplatform import EmailCollision
from flowstudio.store.db import Conn

USER_OUT = "id, email, name, roles, granted_permissions"


async def _linked_user(conn: Conn, provider: str, subject: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        """UPDATE external_identities SET last_seen_at = now()
            WHERE provider = %s AND subject = %s
            RETURNING user_id""",
        (provider, subject),
    )
    link = await cur.fetchone()
    if link is None:
        return None
    cur = await conn.execute(f"SELECT {USER_OUT} FROM users WHERE id = %s", (link["user_id"],))
    return await cur.fetchone()


async def _sync(
    conn: Conn, user: dict[str, Any], email: str, name: str, roles: list[str]
) -> dict[str, Any]:
    if user["name"] == name and list(user["roles"]) == roles and user["email"] == email:
        return user
    cur = await conn.execute(
        f"""UPDATE users SET name = %(name)s, roles = %(roles)s, updated_at = now(),
                email = CASE WHEN EXISTS (SELECT 1 FROM users o WHERE o.email = %(email)s
                                          AND o.id <> %(id)s)
                             THEN email ELSE %(email)s END
            WHERE id = %(id)s RETURNING {USER_OUT}""",
        {"name": name, "roles": roles, "email": email, "id": user["id"]},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def user_for_identity(
    conn: Conn, *, provider: str, subject: str, email: str, name: str, roles: list[str]
) -> dict[str, Any]:
    email = email.strip().lower()
    async with conn.transaction():
        user = await _linked_user(conn, provider, subject)
        if user is not None:
            return await _sync(conn, user, email, name, roles)
        cur = await conn.execute(
            """INSERT INTO users (email, name, roles) VALUES (%s, %s, %s)
               ON CONFLICT (email) DO NOTHING RETURNING id""",
            (email, name, roles),
        )
        created = await cur.fetchone()
        if created is None:  # a concurrent first sight of the same subject may have won
            user = await _linked_user(conn, provider, subject)
            if user is not None:
                return await _sync(conn, user, email, name, roles)
            created = await _adopt_legacy(conn, provider, email)
        if created is None:
            raise EmailCollision(email)
        await conn.execute(
            """INSERT INTO external_identities (provider, subject, user_id, email)
               VALUES (%s, %s, %s, %s)""",
            (provider, subject, created["id"], email),
        )
        cur = await conn.execute(f"SELECT {USER_OUT} FROM users WHERE id = %s", (created["id"],))
        user = await cur.fetchone()
        assert user is not None
        return await _sync(conn, user, email, name, roles)


async def _adopt_legacy(conn: Conn, provider: str, email: str) -> dict[str, Any] | None:
    """A passwordless user with no identity link (made by the email-keyed code before 0012)."""
    cur = await conn.execute(
        """SELECT u.id FROM users u
           WHERE u.email = %s AND u.password_hash IS NULL
             AND NOT EXISTS (SELECT 1 FROM external_identities e WHERE e.user_id = u.id)
           FOR UPDATE""",
        (email,),
    )
    return await cur.fetchone()
