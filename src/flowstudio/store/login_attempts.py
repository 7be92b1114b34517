"""SQL for the login rate limit: failed attempts per email and per client IP in a sliding window.

`login` (api/auth_routes.py) calls `retry_after(conn, email, ip, limit, window_s)` before checking the
password (None: allowed; else seconds until the oldest counted failure leaves the window), then
`record_failure` on a bad password or `clear_email` after a success. Rows live in PostgreSQL so every
API process sees the same counts; rows older than a day are pruned on each recorded failure.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg


async def retry_after(
    conn: psycopg.AsyncConnection[Any], email: str, ip: str, limit: int, window_s: int
) -> int | None:
    """Seconds until fewer than `limit` failures remain in the window, for the email and the IP."""
    cur = await conn.execute(
        """SELECT max(extract(epoch FROM (at + make_interval(secs => %(w)s) - now()))) AS wait
           FROM (
               (SELECT at FROM login_attempts
                WHERE email = %(email)s AND at > now() - make_interval(secs => %(w)s)
                ORDER BY at DESC OFFSET %(skip)s LIMIT 1)
               UNION ALL
               (SELECT at FROM login_attempts
                WHERE ip = %(ip)s AND at > now() - make_interval(secs => %(w)s)
                ORDER BY at DESC OFFSET %(skip)s LIMIT 1)
           ) AS limiting""",
        {"email": email, "ip": ip, "w": window_s, "skip": limit - 1},
    )
    row = await cur.fetchone()
    if row is None or row["wait"] is None:
        return None
    return max(1, math.ceil(float(row["wait"])))


async def record_failure(conn: psycopg.AsyncConnection[Any], email: str, ip: str) -> None:
    async with conn.transaction():
        await conn.execute("INSERT INTO login_attempts (email, ip) VALUES (%s, %s)", (email, ip))
        await conn.execute("DELETE FROM login_attempts WHERE at < now() - interval '1 day'")


async def clear_email(conn: psycopg.AsyncConnection[Any], email: str) -> None:
    await conn.execute("DELETE FROM login_attempts WHERE email = %s", (email,))
