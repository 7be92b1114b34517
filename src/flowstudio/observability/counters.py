"""Process counters persisted in PostgreSQL: made anywhere, scraped once from the API.

`COUNTERS.inc(family, labels, value)` adds to an in-memory delta (no I/O; safe from any task).
`flush_loop(pool)` (run by workers and orchestrators) writes the pending deltas every few seconds
with one `INSERT ... ON CONFLICT DO UPDATE SET value = value + delta` per (family, labels), so a
process that restarts loses at most the last interval, values never go down (Prometheus counter
semantics) and there is no per-pid file to merge (prometheus-client's multiprocess trap).
`totals()` returns what this process counted since it started (its standalone METRICS_PORT shows
them). The API reads the table in `dbmetrics`. Label values must be bounded (model, provider host,
outcome): never run or user ids.
Helpers: `llm_call(base_url, model, outcome)` and `llm_tokens(...)` name the LLM families;
`provider_of(base_url)` is the host[:port] of the base URL (the default OpenAI host when None).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

import anyio

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0

LLM_REQUESTS = "flowstudio_llm_requests_total"
LLM_TOKENS = "flowstudio_llm_tokens_total"
LEASE_EXPIRIES = "flowstudio_lease_expiries_total"
REDISPATCHES = "flowstudio_redispatches_total"
RUNS_SETTLED = "flowstudio_runs_settled_total"

HELP = {
    LLM_REQUESTS: "LLM API requests (each try) by provider host, model and outcome "
    "(ok, rate_limited, server_error, client_error, timeout, connection_error)",
    LLM_TOKENS: "LLM tokens by provider host, model and direction (input, output)",
    LEASE_EXPIRIES: "Running steps whose lease expired, made ready again by recovery",
    REDISPATCHES: "Ready steps re-dispatched by recovery because their message was lost",
    RUNS_SETTLED: "Messages published by recovery for live runs that had no live work",
}


def _key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


class CounterBuffer:
    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], float] = {}
        self.total: dict[tuple[str, str], float] = {}

    def inc(self, family: str, labels: dict[str, str] | None = None, value: float = 1.0) -> None:
        if value <= 0:
            return
        key = (family, _key(labels or {}))
        self.pending[key] = self.pending.get(key, 0.0) + value
        self.total[key] = self.total.get(key, 0.0) + value

    def totals(self) -> dict[tuple[str, str], float]:
        return dict(self.total)

    async def flush(self, pool: Any) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        try:
            async with pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO metrics_counters AS c (family, labels, value) VALUES (%s, %s, %s)
                       ON CONFLICT (family, labels)
                       DO UPDATE SET value = c.value + excluded.value, updated_at = now()""",
                    [(family, labels, value) for (family, labels), value in sorted(batch.items())],
                )
        except Exception as exc:  # DB down: keep the deltas for the next flush
            for key, value in batch.items():
                self.pending[key] = self.pending.get(key, 0.0) + value
            log.warning("metrics counters not flushed (kept for the next try): %s", exc)

    async def flush_loop(self, pool: Any, interval: float = FLUSH_SECONDS) -> None:
        try:
            while True:
                await anyio.sleep(interval)
                await self.flush(pool)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(3):
                await self.flush(pool)


COUNTERS = CounterBuffer()


def provider_of(base_url: str | None) -> str:
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or "unknown"
    return f"{host}:{parts.port}" if parts.port else host


MAX_LABEL_VALUES = 100  # distinct models / providers per process before "other"
_seen: dict[str, set[str]] = {"model": set(), "provider": set()}


def bounded(kind: str, value: str) -> str:
    """A flow author picks model names and base URLs: cap their distinct values (cardinality)."""
    value = value[:80]
    seen = _seen[kind]
    if value in seen:
        return value
    if len(seen) >= MAX_LABEL_VALUES:
        return "other"
    seen.add(value)
    return value


def llm_call(base_url: str | None, model: str, outcome: str) -> None:
    provider = bounded("provider", provider_of(base_url))
    COUNTERS.inc(
        LLM_REQUESTS,
        {"provider": provider, "model": bounded("model", model), "outcome": outcome},
    )


def llm_tokens(base_url: str | None, model: str, input_tokens: int, output_tokens: int) -> None:
    provider = bounded("provider", provider_of(base_url))
    model = bounded("model", model)
    COUNTERS.inc(
        LLM_TOKENS, {"provider": provider, "model": model, "direction": "input"}, input_tokens
    )
    COUNTERS.inc(
        LLM_TOKENS, {"provider": provider, "model": model, "direction": "output"}, output_tokens
    )
