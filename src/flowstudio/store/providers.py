"""SQL for LLM providers and their cluster-wide limits (migrations 0020, 0022, 0023, 0035).

The API's provider routes (`api/providers.py`) call `list_providers` / `get_provider` (each row with
its live figures: calls in flight, parked steps, requests and tokens of the last minute),
`create_provider` (None when that base_url + key fingerprint exists), `update_provider` and
`delete_provider`. Workers call `ensure_provider` (auto-registration on a provider's first call),
`ask` (a line of waiting steps, in order; it also reports calls the provider admitted), `release`,
and `release_then_ask` (a release that asks for the head of the line in the same statement); one
round trip each: the `provider_acquire_many` / `provider_release` functions. The orchestrator calls
`wake_candidates` and `mark_woken` (`engine/parking.py`) and `purge` (stale permits, usage buckets,
parked rows, and unconfigured providers idle for a day). The key itself is never stored: only its fingerprint
(`providers/identity.py`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flowstudio.store.db import Conn

# An unconfigured provider starts at `initial` concurrency (PROVIDER_INITIAL_CONCURRENCY) and doubles
# it every round of successful calls until its first 429 (slow start); then it backs off and climbs
# back to the limit that 429 revealed (`provider_release`, migration 0022): no storm of 429s. The
# window slow start begins at (`start_window`) is filled at once (migration 0028).

Line = list[tuple[int, int, int]]  # (step id, attempt, estimated tokens) of each waiting step

LIVE_COLS = """p.id, p.base_url, p.key_fingerprint, p.label, p.max_concurrency, p.rpm, p.tpm,
    greatest(1, floor(least(p.effective_concurrency, p.ceiling)))::int AS effective_concurrency,
    floor(p.known_cap)::int AS learned_limit,
    provider_in_flight(p.id) AS in_flight,
    (SELECT count(*) FROM provider_parked k JOIN steps s ON s.id = k.step_id
     WHERE k.provider_id = p.id AND k.woken_at IS NULL AND s.status = 'waiting')::int AS parked,
    coalesce(u.requests, 0)::int AS requests_last_minute,
    coalesce(u.tokens, 0)::bigint AS tokens_last_minute,
    p.throttled_total, p.last_throttled_at, p.created_at, p.updated_at"""
USAGE_JOIN = """LEFT JOIN LATERAL (
    SELECT sum(requests) AS requests, sum(tokens) AS tokens FROM provider_usage
    WHERE provider_id = p.id AND second > now() - interval '60 seconds') u ON TRUE"""


async def list_providers(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {LIVE_COLS} FROM providers p {USAGE_JOIN} ORDER BY p.base_url, p.created_at"
    )
    return await cur.fetchall()


async def get_provider(conn: Conn, provider_id: Any) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {LIVE_COLS} FROM providers p {USAGE_JOIN} WHERE p.id = %s", (provider_id,)
    )
    return await cur.fetchone()


async def create_provider(
    conn: Conn,
    *,
    base_url: str,
    fingerprint: str,
    label: str | None,
    max_concurrency: int | None,
    rpm: int | None,
    tpm: int | None,
    default_ceiling: int,
    initial: int,
) -> Any | None:
    """The new provider's id, or None when that base_url + key is already registered."""
    ceiling = max_concurrency or default_ceiling
    start = max_concurrency or min(default_ceiling, initial)
    cur = await conn.execute(
        """INSERT INTO providers (base_url, key_fingerprint, label, max_concurrency, rpm, tpm,
                                  ceiling, effective_concurrency, start_window)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (base_url, key_fingerprint) DO NOTHING RETURNING id""",
        (base_url, fingerprint, label, max_concurrency, rpm, tpm, ceiling, start, start),
    )
    row = await cur.fetchone()
    return row["id"] if row else None


async def update_provider(
    conn: Conn, provider_id: Any, changes: dict[str, Any], default_ceiling: int, initial: int
) -> bool:
    """Set the given columns (label, max_concurrency, rpm, tpm; None clears). A new
    max_concurrency also restarts the adaptive concurrency: at that value, or (cleared) in slow
    start below the default ceiling."""
    sets = [f"{col} = %({col})s" for col in changes]
    if "max_concurrency" in changes:
        sets += [
            "ceiling = coalesce(%(max_concurrency)s::int, %(default_ceiling)s::int)",
            "effective_concurrency = coalesce(%(max_concurrency)s::int,"
            " least(%(default_ceiling)s::int, %(slow_start)s::int))",
            "start_window = coalesce(%(max_concurrency)s::int,"
            " least(%(default_ceiling)s::int, %(slow_start)s::int))",
            "last_decrease_at = NULL",
            "known_cap = NULL",
        ]
    sets.append("updated_at = now()")
    cur = await conn.execute(
        f"UPDATE providers SET {', '.join(sets)} WHERE id = %(id)s",
        {
            **changes,
            "id": provider_id,
            "default_ceiling": default_ceiling,
            "slow_start": initial,
        },
    )
    return cur.rowcount > 0


async def delete_provider(conn: Conn, provider_id: Any) -> bool:
    cur = await conn.execute("DELETE FROM providers WHERE id = %s", (provider_id,))
    return cur.rowcount > 0


async def ensure_provider(
    conn: Conn, base_url: str, fingerprint: str, default_ceiling: int, initial: int
) -> str:
    """The provider's id, registering it (no limits: adaptive from 429s alone) on first use."""
    for _ in range(
        3
    ):  # a racing registration commits between our INSERT and our SELECT: look again
        cur = await conn.execute(
            """WITH ins AS (
                   INSERT INTO providers (base_url, key_fingerprint, ceiling, effective_concurrency,
                                          start_window)
                   VALUES (%(url)s, %(fp)s, %(ceiling)s, least(%(ceiling)s, %(start)s),
                           least(%(ceiling)s, %(start)s))
                   ON CONFLICT (base_url, key_fingerprint) DO NOTHING RETURNING id)
               SELECT id FROM ins
               UNION ALL SELECT id FROM providers
               WHERE base_url = %(url)s AND key_fingerprint = %(fp)s
               LIMIT 1""",
            {"url": base_url, "fp": fingerprint, "ceiling": default_ceiling, "start": initial},
        )
        row = await cur.fetchone()
        if row is not None:
            return str(row["id"])
    raise RuntimeError(f"provider {base_url} could not be registered")


class Answer(NamedTuple):
    """An ask's verdict per step of the line, and whether the provider is still in slow start."""

    verdicts: list[str]
    slow_start: bool | None  # None: not asked (a release with nobody in line)


ACQUIRE = """provider_acquire_many(%s, %s::bigint[], %s::int[], %s::bigint[], %s, %s, %s)"""


def _answer(row: dict[str, Any] | None, n: int) -> Answer:
    if row is None or row["verdicts"] is None:
        return Answer(["gone"] * n, False)
    slow_start = None if row["slow_start"] is None else bool(row["slow_start"])  # None: gone
    return Answer([str(v) for v in row["verdicts"]], slow_start)


def _line_params(
    provider_id: str, line: Line, releases: int, accepted: int, probe: bool
) -> tuple[Any, ...]:
    return (
        provider_id,
        [s for s, _, _ in line],
        [a for _, a, _ in line],
        [t for _, _, t in line],
        releases,
        accepted,
        probe,
    )


async def ask(
    conn: Conn,
    provider_id: str,
    line: Line,
    releases: int = 0,
    accepted: int = 0,
    probe: bool = True,
) -> Answer:
    """A verdict per (step id, attempt, estimated tokens), in order: 'ok' | 'concurrency' | 'rpm' |
    'tpm' | 'gone'; after the first refusal the rest are refused too (`provider_acquire_many`).
    `releases`: how many permit releases this ask answers for; `accepted`: how many calls it
    reports as admitted by the provider (migration 0035). Slow start grants 2 for each (2 for an
    ask that answers for none), and raises the concurrency by one per admitted call. `probe`
    false: no grant past the provider's known cap (0035)."""
    cur = await conn.execute(
        f"SELECT * FROM {ACQUIRE}", _line_params(provider_id, line, releases, accepted, probe)
    )
    return _answer(await cur.fetchone(), len(line))


async def acquire_many(conn: Conn, provider_id: str, line: Line, releases: int = 0) -> list[str]:
    """`ask(...)`'s verdicts alone."""
    return (await ask(conn, provider_id, line, releases)).verdicts


async def release_then_ask(
    conn: Conn,
    permit: tuple[int, int, str, int | None],
    provider_id: str,
    line: Line,
    releases: int = 1,
    accepted: int = 0,
    probe: bool = True,
) -> Answer:
    """`release(*permit)` then, in the same statement (one round trip, one transaction: the
    ask sees the release), `ask(provider_id, line, releases, accepted, probe)` (`releases` counts this
    one and those made earlier that it answers for); an empty line only releases."""
    step_id, attempt, outcome, tokens = permit
    if not line:
        await release(conn, step_id, attempt, outcome, tokens)
        return Answer([], None)
    cur = await conn.execute(
        # the ask in the target list of a scan of `freed`: it runs after the release, once
        f"""WITH freed AS MATERIALIZED (SELECT provider_release(%s, %s, %s, %s)),
                 asked AS MATERIALIZED (SELECT {ACQUIRE} AS a FROM freed)
            SELECT (a).verdicts, (a).slow_start FROM asked""",
        (
            step_id,
            attempt,
            outcome,
            tokens,
            *_line_params(provider_id, line, releases, accepted, probe),
        ),
    )
    return _answer(await cur.fetchone(), len(line))


async def release(conn: Conn, step_id: int, attempt: int, outcome: str, tokens: int | None) -> None:
    """Free a permit; `outcome` 'ok' | 'done' (ok, reported admitted) | 'throttled' | 'error' |
    'failed' (an error, reported admitted) drives the AIMD concurrency."""
    await conn.execute(
        "SELECT provider_release(%s, %s, %s, %s)", (step_id, attempt, outcome, tokens)
    )


async def park_row(
    conn: Conn, step_id: int, run_id: str, provider_id: str, seconds: float, reason: str
) -> None:
    """Record a parked step (inside the checkpoint transaction that moved it to `waiting`)."""
    await conn.execute(
        """INSERT INTO provider_parked (step_id, run_id, provider_id, not_before, reason)
           VALUES (%(step)s, %(run)s, %(provider)s,
                   now() + make_interval(secs => %(secs)s), %(reason)s)
           ON CONFLICT (step_id) DO UPDATE SET provider_id = EXCLUDED.provider_id,
               not_before = EXCLUDED.not_before, reason = EXCLUDED.reason, woken_at = NULL,
               parked_at = now()""",
        {
            "step": step_id,
            "run": run_id,
            "provider": provider_id,
            "secs": seconds,
            "reason": reason,
        },
    )


async def wake_candidates(conn: Conn, limit: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT step_id, run_id, provider_id FROM provider_wake_candidates(%s)", (limit,)
    )
    return await cur.fetchall()


async def mark_woken(conn: Conn, step_id: int) -> None:
    await conn.execute("UPDATE provider_parked SET woken_at = now() WHERE step_id = %s", (step_id,))


async def forget_parked(conn: Conn, step_id: int) -> None:
    await conn.execute("DELETE FROM provider_parked WHERE step_id = %s", (step_id,))


PURGE = [
    # permits whose step no longer holds that lease (finished, reaped, taken over)
    """DELETE FROM provider_permits pp WHERE pp.acquired_at < now() - interval '5 seconds'
       AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.id = pp.step_id AND s.attempt = pp.attempt
                       AND s.status = 'running' AND s.lease_expires_at > now())""",
    "DELETE FROM provider_usage WHERE second < now() - interval '5 minutes'",
    # parked rows of steps that left `waiting` some other way (cancelled, failed), and woken rows
    # whose step never came back for its permit
    """DELETE FROM provider_parked k WHERE (k.woken_at IS NULL AND NOT EXISTS (
           SELECT 1 FROM steps s WHERE s.id = k.step_id AND s.status = 'waiting'))
        OR k.woken_at < now() - interval '1 minute'""",
    # providers registered by a call, never configured, idle for a day (keys come and go: the
    # table and the metrics' series stay bounded; a new call registers it again)
    """DELETE FROM providers p WHERE p.label IS NULL AND p.max_concurrency IS NULL
         AND p.rpm IS NULL AND p.tpm IS NULL AND p.updated_at < now() - interval '1 day'
         AND coalesce(p.last_used_at, p.created_at) < now() - interval '1 day'
         AND NOT EXISTS (SELECT 1 FROM provider_parked k WHERE k.provider_id = p.id)
         AND NOT EXISTS (SELECT 1 FROM provider_permits pp WHERE pp.provider_id = p.id)""",
]


async def purge(conn: Conn) -> None:
    for sql in PURGE:
        await conn.execute(sql)


METRICS_SQL = """SELECT p.id, p.base_url,
    greatest(1, floor(least(p.effective_concurrency, p.ceiling)))::int AS effective_concurrency,
    provider_in_flight(p.id) AS in_flight,
    (SELECT count(*) FROM provider_parked k JOIN steps s ON s.id = k.step_id
     WHERE k.provider_id = p.id AND k.woken_at IS NULL AND s.status = 'waiting')::int AS parked,
    p.throttled_total
    FROM providers p ORDER BY p.id"""
