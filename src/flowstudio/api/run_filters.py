"""Query-string filters of `GET /api/v1/runs` parsed into typed values, or 422 with the field path.

`api.runs.list_runs` calls `parse_run_filters(created_after, created_before, batch_id)` and hands the
result to `store.runs.list_runs`: a half-open time window `[created_after, created_before)` (ISO 8601;
a timestamp without offset is UTC) and a batch id. The keyset cursor is independent of them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID

import msgspec

from flowstudio.api.errors import Problem, invalid


class RunFilters(msgspec.Struct, frozen=True, kw_only=True):
    created_after: datetime | None = None
    created_before: datetime | None = None
    batch_id: UUID | None = None


def _bad(name: str, reason: str) -> Problem:
    return invalid(f"query.{name}", reason, f"{name} {reason}")


def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None


def query_time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    # an unescaped '+' of an offset arrives as ' ' in a query string
    parsed = _iso(text) or _iso(text.replace(" ", "+"))
    if parsed is None:
        raise _bad(name, "must be an ISO 8601 timestamp, e.g. 2025-01-31T12:00:00Z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_run_filters(
    created_after: str | None, created_before: str | None, batch_id: str | None
) -> RunFilters:
    after = query_time("created_after", created_after)
    before = query_time("created_before", created_before)
    if after is not None and before is not None and after >= before:
        raise _bad("created_before", "must be later than created_after")
    batch = None
    if batch_id is not None:
        try:
            batch = UUID(batch_id)
        except ValueError as exc:
            raise _bad("batch_id", "must be a UUID") from exc
    return RunFilters(created_after=after, created_before=before, batch_id=batch)
