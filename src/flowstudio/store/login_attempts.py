"""SQL for the login backoff: failed attempts counted per (email, address), per address and per email.

`api/auth_routes.py` asks `known_client` whether this client logged in to the account before (its
address, or its device cookie's hash, in `login_known_clients`), then `retry_after(conn, email, ip,
known, policy)` before checking the password: each counter allows `free` failures in the window, and
every failure beyond doubles the wait after the latest one (base, 2 base, 4 base ... up to max). The
(email, address) counter always applies; the per-address and per-email counters apply to unknown
clients only, so failures sprayed from many addresses slow the attacker and never the owner at a
client that logged in before (no hard lock on the email). A wrong password is `record_failure`; the
right one is `record_success` (clears that pair's failures, remembers the address and the device).
Rows live in PostgreSQL so every API process sees the same counts; old rows are pruned as we go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from flowstudio.store.db import Conn

KNOWN_CLIENT_DAYS = 90


@dataclass(frozen=True)
class BackoffPolicy:
    pair_free: int  # failures allowed per (email, address) before delays
    ip_free: int  # per address, any email (unknown clients)
    email_free: int  # per email, any address (unknown clients)
    base_s: float
    max_s: float
    window_s: int

    def wait(self, failures: int, free: int, last: datetime | None, now: datetime) -> float:
        if last is None or failures < free:
            return 0.0
        delay = min(self.max_s, self.base_s * 2 ** min(failures - free, 40))
        return (last - now).total_seconds() + delay


async def known_client(conn: Conn, email: str, ip: str, device_hash: str | None) -> bool:
    cur = await conn.execute(
        """SELECT 1 FROM login_known_clients
           WHERE email = %s AND ((kind = 'ip' AND value = %s) OR (kind = 'device' AND value = %s))
             AND last_success_at > now() - make_interval(days => %s)
           LIMIT 1""",
        (email, ip, device_hash or "", KNOWN_CLIENT_DAYS),
    )
    return await cur.fetchone() is not None


async def retry_after(
    conn: Conn, email: str, ip: str, known: bool, policy: BackoffPolicy
) -> int | None:
    """Seconds the client must wait before its next try, or None when it may try now."""
    cur = await conn.execute(
        """SELECT count(*) FILTER (WHERE email = %(email)s AND ip = %(ip)s) AS pair_n,
                  max(at) FILTER (WHERE email = %(email)s AND ip = %(ip)s) AS pair_last,
                  count(*) FILTER (WHERE ip = %(ip)s) AS ip_n,
                  max(at) FILTER (WHERE ip = %(ip)s) AS ip_last,
                  count(*) FILTER (WHERE email = %(email)s) AS email_n,
                  max(at) FILTER (WHERE email = %(email)s) AS email_last,
                  now() AS now
           FROM login_attempts
           WHERE (email = %(email)s OR ip = %(ip)s) AND at > now() - make_interval(secs => %(w)s)""",
        {"email": email, "ip": ip, "w": policy.window_s},
    )
    row = await cur.fetchone()
    assert row is not None
    now = row["now"]
    waits = [policy.wait(row["pair_n"], policy.pair_free, row["pair_last"], now)]
    if not known:
        waits.append(policy.wait(row["ip_n"], policy.ip_free, row["ip_last"], now))
        waits.append(policy.wait(row["email_n"], policy.email_free, row["email_last"], now))
    wait = max(waits)
    return math.ceil(wait) if wait > 0 else None


# record_failure / record_success: two statements in one transaction each (alike in shape only).
async def record_failure(conn: Conn, email: str, ip: str, window_s: int) -> None:
    async with conn.transaction():
        await conn.execute("INSERT INTO login_attempts (email, ip) VALUES (%s, %s)", (email, ip))
        await conn.execute(
            "DELETE FROM login_attempts WHERE at < now() - make_interval(secs => %s)",
            (max(window_s, 86400),),
        )


async def record_success(conn: Conn, email: str, ip: str, device_hash: str) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM login_attempts WHERE email = %s AND ip = %s", (email, ip))
        await conn.execute(
            """INSERT INTO login_known_clients (email, kind, value)
               VALUES (%(email)s, 'ip', %(ip)s), (%(email)s, 'device', %(device)s)
               ON CONFLICT (email, kind, value) DO UPDATE SET last_success_at = now()""",
            {"email": email, "ip": ip, "device": device_hash},
        )
        await conn.execute(
            """DELETE FROM login_known_clients
               WHERE last_success_at < now() - make_interval(days => %s)""",
            (KNOWN_CLIENT_DAYS,),
        )
