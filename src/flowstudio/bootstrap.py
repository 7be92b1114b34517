"""First start: the first admin of an empty install (called by `flowstudio up` after migrating).

With FLOWSTUDIO_ADMIN_EMAIL and FLOWSTUDIO_ADMIN_PASSWORD set, an empty `users` table gets that admin.
Without them, an admin `admin@localhost` is created with a random one-time password that is written
once to the log (stderr) and never stored in clear; sign in and change it. A table that already has
users is left alone (the variables are ignored then, so they cannot reset a password later).
The check and the insert run under an advisory lock, so two supervisors starting at once make one.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from flowstudio.settings import Settings
from flowstudio.store.db import connect
from flowstudio.store.users import create_user

log = logging.getLogger(__name__)
LOCK_KEY = 0x46534131  # "FSA1"
DEFAULT_EMAIL = "admin@localhost"


async def ensure_first_admin(settings: Settings) -> str | None:
    """Create the first admin if there is no user yet; returns its email, or None."""
    email = os.environ.get("FLOWSTUDIO_ADMIN_EMAIL", "").strip()
    password = os.environ.get("FLOWSTUDIO_ADMIN_PASSWORD", "")
    if bool(email) != bool(password):
        raise ValueError(
            "set both FLOWSTUDIO_ADMIN_EMAIL and FLOWSTUDIO_ADMIN_PASSWORD, or neither"
        )
    if password and len(password) < 8:
        raise ValueError("FLOWSTUDIO_ADMIN_PASSWORD must have 8 or more characters")
    conn = await connect(settings, name="flowstudio-bootstrap")
    try:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM users) AS any")
        row: dict[str, Any] | None = await cur.fetchone()
        if row and row["any"]:
            return None
        generated = not password
        if generated:
            email, password = DEFAULT_EMAIL, secrets.token_urlsafe(12)
        await create_user(conn, email=email, password=password, roles=["admin"], name="Admin")
        if generated:
            log.warning(
                "first start: created admin %s with one-time password %s "
                "(shown once; sign in and change it)",
                email,
                password,
            )
        else:
            log.info("first start: created admin %s from FLOWSTUDIO_ADMIN_EMAIL", email)
        return email
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        await conn.close()
