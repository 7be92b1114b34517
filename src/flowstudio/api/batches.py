"""Batch routes: upload many inputs at once, watch the per-state counts, stream results, cancel.

`create_batch` (POST /api/v1/flows/{id}/batches) checks the flow first, then reads the body as a
stream (`request.stream()`): the parser for its Content-Type (`api/batch_items.py`: JSON list, JSONL,
CSV, or multipart `file`) yields one item at a time, each validated and appended to a spool file
(memory up to SPOOL_MEMORY, then disk). Only a fully valid upload is loaded: any bad item answers 422
with every error's path (`body[line 17]`, `body[3]`) and nothing is created, and an upload cut off
mid-body creates nothing either. Caps (settings): BATCH_MAX_UPLOAD_BYTES and BATCH_MAX_ITEMS per
upload (413), BATCH_MAX_LIVE_ITEMS_PER_USER live batch runs per user, checked before reading and again,
with the new items, under a per-user advisory lock held through loading (429). The spooled items then
go to the engine command `engine.commands.load_batch` (`engine.batches.load_batch`: a first chunk
of 128 runs, then 1000 per transaction, batch `loading` -> `running`); the orchestrator starts the
runs a few at a time, from the first chunk on (while the rest load). Reads: `get_batch` (counts
per run state and progress), `batch_results` (JSONL in input order, streamed page by page with a
fresh pooled connection per page), `list_batches`;
`cancel_batch` (`engine.commands.cancel_batch`).
Ownership: only the owner (or an admin) sees a batch; others get 404.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import IO, Any
from uuid import UUID

import msgspec
import psycopg
from litestar import get, post
from litestar.datastructures import State
from litestar.exceptions import InternalServerException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from flowstudio.api.batch_items import Bad, ItemParser, parser_for
from flowstudio.api.deps import AnyRequest, CurrentUser, RequestConn, User, requires, seen_or_404
from flowstudio.api.errors import (
    Problem,
    bad_request,
    invalid,
    problem,
    too_many,
    unavailable,
)
from flowstudio.api.flows import owned_flow
from flowstudio.engine import commands
from flowstudio.store import batches as store
from flowstudio.store import locks
from flowstudio.store.db import Conn, Pool

log = logging.getLogger(__name__)
MAX_ITEMS = 1_000_000  # defaults; the settings BATCH_MAX_ITEMS / BATCH_MAX_UPLOAD_BYTES rule
MAX_UPLOAD_BYTES = 4 * 1024**3  # Litestar's hard ceiling on the body; the setting is checked below
USER_LOCK = 0x42557372  # advisory lock class "BUsr": one user's cap check + load at a time
SPOOL_MEMORY = 8 * 1024 * 1024
MAX_REPORTED_ERRORS = 50
RESULTS_PAGE = 1000
STATES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")


class BatchCreated(msgspec.Struct, kw_only=True):
    id: str
    status: str
    total: int


class BatchCounts(msgspec.Struct, kw_only=True):
    queued: int = 0
    running: int = 0
    waiting: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class BatchOut(msgspec.Struct, kw_only=True):
    id: str
    flow_id: str
    flow_version: int
    status: str
    total: int
    counts: BatchCounts
    progress: float  # terminal runs / total
    error: dict[str, Any] | None
    created_at: datetime
    loaded_at: datetime | None
    finished_at: datetime | None


class BatchResult(msgspec.Struct, kw_only=True):
    index: int
    run_id: str
    status: str
    outputs: msgspec.Raw
    error: msgspec.Raw


class Upload(msgspec.Struct, kw_only=True):
    total: int = 0
    invalid: int = 0
    errors: list[dict[str, str]] = msgspec.field(default_factory=list)
    bytes: int = 0
    max_items: int = MAX_ITEMS
    max_bytes: int = MAX_UPLOAD_BYTES


def _too_large(limit: int, unit: str) -> Problem:
    return problem(
        413,
        f"a batch upload holds at most {limit} {unit}",
        path="body",
        reason=f"more than {limit} {unit}",
    )


def _too_many_live(live: int, adding: int, cap: int) -> Problem:
    return too_many(
        f"you have {live} live batch items; the limit is {cap} per user "
        "(wait for your batches to finish or cancel some)",
        "60",
        path="body",
        reason=f"{live} live + {adding} new items > {cap}",
    )


def _take(items: list[bytes | Bad], upload: Upload, spool: IO[bytes]) -> None:
    for item in items:
        if isinstance(item, Bad):
            upload.invalid += 1
            if len(upload.errors) < MAX_REPORTED_ERRORS:
                upload.errors.append({"path": item.path, "reason": item.reason})
            continue
        upload.total += 1
        if upload.total > upload.max_items:
            raise _too_large(upload.max_items, "items")
        if not upload.invalid:  # after the first error only validation continues
            spool.write(item)
            spool.write(b"\n")


async def spool_upload(
    request: AnyRequest, parser: ItemParser, spool: IO[bytes], upload: Upload | None = None
) -> Upload:
    """Read the whole body chunk by chunk, validating and spooling items; raise 422 on bad ones,
    413 past `upload.max_bytes` bytes or `upload.max_items` items."""
    upload = upload or Upload()
    try:
        async for chunk in request.stream():
            if chunk:
                upload.bytes += len(chunk)
                if upload.bytes > upload.max_bytes:
                    raise _too_large(upload.max_bytes, "bytes")
                _take(parser.feed(chunk), upload, spool)
    except InternalServerException as exc:  # Litestar's signal for "client disconnected"
        log.info("batch upload interrupted after %d items: %s", upload.total, exc.detail)
        raise bad_request("upload interrupted; nothing was created") from exc
    _take(parser.close(), upload, spool)
    if upload.invalid:
        shown = len(upload.errors)
        raise Problem(
            422,
            "Unprocessable Content",
            f"{upload.invalid} invalid item(s) (first {shown} listed); nothing was created",
            errors=upload.errors,
        )
    if not upload.total:
        raise invalid("body", "no items", "the upload holds no items")
    return upload


def spooled_items(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    for line in spool:
        yield line.rstrip(b"\n")


@post(
    "/api/v1/flows/{flow_id:uuid}/batches",
    status_code=202,
    request_max_body_size=MAX_UPLOAD_BYTES,
    opt={"body": "stream"},  # api/guards.py: never buffered there; items are checked one by one
    guards=[requires("runs:write")],
)
async def create_batch(
    flow_id: FromPath[UUID],
    request: AnyRequest,
    state: State,
    user: CurrentUser,
    conn: RequestConn,
    version: FromQuery[int | None] = None,
) -> BatchCreated:
    settings = state.settings
    max_live = int(getattr(settings, "batch_max_live_items_per_user", MAX_ITEMS))
    live = await store.live_items(conn, user.id)
    if live >= max_live:  # early refusal, before reading the body; rechecked under the lock
        raise _too_many_live(live, 0, max_live)
    flow = await owned_flow(conn, user, flow_id)
    pinned = version or flow.get("published_version") or flow["version"]
    if not 1 <= pinned <= flow["version"]:
        raise invalid("query.version", "no such version", f"flow has no version {pinned}")
    parser = parser_for(request.headers.get("content-type", ""))
    if parser is None:
        raise problem(
            415,
            "send application/json (a list), application/x-ndjson, text/csv or "
            "multipart/form-data with a `file` field",
            path="header.Content-Type",
            reason="unsupported media type",
        )
    batch_id = uuid.uuid4()
    limits = Upload(
        max_items=int(getattr(settings, "batch_max_items", MAX_ITEMS)),
        max_bytes=int(getattr(settings, "batch_max_upload_bytes", MAX_UPLOAD_BYTES)),
    )
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
        upload = await spool_upload(request, parser, spool, limits)
        async with locks.session_lock(conn, USER_LOCK, str(user.id)):
            try:
                live = await store.live_items(conn, user.id)
                if live + upload.total > max_live:
                    raise _too_many_live(live, upload.total, max_live)
                await commands.load_batch(
                    conn,
                    batch_id=batch_id,
                    flow_id=flow_id,
                    version=pinned,
                    owner_id=user.id,
                    total=upload.total,
                    items=spooled_items(spool),
                )
            except (
                psycopg.OperationalError
            ) as exc:  # the live-items recheck (commands map their own)
                raise unavailable("database unavailable; batch failed") from exc
    return BatchCreated(id=str(batch_id), status="running", total=upload.total)


async def owned_batch(conn: Conn, user: User, batch_id: UUID) -> dict[str, Any]:
    return seen_or_404(await store.get_batch(conn, batch_id), user, "batch")


async def batch_out(conn: Conn, batch: dict[str, Any]) -> BatchOut:
    counts = await store.run_counts(conn, batch["id"])
    done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
    total = batch["total"]
    return BatchOut(
        id=str(batch["id"]),
        flow_id=str(batch["flow_id"]),
        flow_version=batch["flow_version"],
        status=batch["status"],
        total=total,
        counts=BatchCounts(**{s: counts.get(s, 0) for s in STATES}),
        progress=round(done / total, 6) if total else 1.0,
        error=batch["error"],
        created_at=batch["created_at"],
        loaded_at=batch["loaded_at"],
        finished_at=batch["finished_at"],
    )


@get("/api/v1/batches/{batch_id:uuid}", guards=[requires("runs:read")])
async def get_batch(batch_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> BatchOut:
    return await batch_out(conn, await owned_batch(conn, user, batch_id))


@get("/api/v1/batches", guards=[requires("runs:read")])
async def list_batches(
    user: CurrentUser,
    conn: RequestConn,
    flow_id: FromQuery[UUID | None] = None,
    limit: FromQuery[int] = 20,
) -> list[BatchOut]:
    """Newest first; each with its counts (one indexed count per batch, hence the small limit)."""
    if not 1 <= limit <= 100:
        raise invalid("query.limit", "must be between 1 and 100", "limit must be 1-100")
    rows = await store.list_batches(
        conn, owner_id=None if user.is_admin else user.id, flow_id=flow_id, limit=limit
    )
    return [await batch_out(conn, r) for r in rows]


def _raw(text: str | None) -> msgspec.Raw:
    return msgspec.Raw(text.encode() if text is not None else b"null")


async def result_lines(pool: Pool, batch_id: UUID) -> AsyncIterator[bytes]:
    """JSONL of the batch's runs in input order, one page per pooled-connection checkout."""
    after = -1
    while True:
        async with pool.connection() as conn:
            rows = await store.results_page(conn, batch_id, after, RESULTS_PAGE)
        if not rows:
            return
        yield b"".join(
            msgspec.json.encode(
                BatchResult(
                    index=r["batch_index"],
                    run_id=str(r["id"]),
                    status=r["status"],
                    outputs=_raw(r["outputs"]),
                    error=_raw(r["error"]),
                )
            )
            + b"\n"
            for r in rows
        )
        after = rows[-1]["batch_index"]


RESULTS_DOCS = {
    200: ResponseSpec(
        BatchResult,
        generate_examples=False,
        media_type="application/x-ndjson",
        description="JSONL: one BatchResult per input row, in input order.",
    )
}


@get(
    "/api/v1/batches/{batch_id:uuid}/results",
    guards=[requires("runs:read")],
    responses=RESULTS_DOCS,
)
async def batch_results(
    batch_id: FromPath[UUID], state: State, user: CurrentUser, conn: RequestConn
) -> Stream:
    await owned_batch(conn, user, batch_id)
    return Stream(result_lines(state.pool, batch_id), media_type="application/x-ndjson")


@post("/api/v1/batches/{batch_id:uuid}/cancel", status_code=202, guards=[requires("runs:write")])
async def cancel_batch(batch_id: FromPath[UUID], user: CurrentUser, conn: RequestConn) -> BatchOut:
    await owned_batch(conn, user, batch_id)
    await commands.cancel_batch(conn, batch_id, reason=f"batch cancelled by {user.email}")
    return await batch_out(conn, await owned_batch(conn, user, batch_id))


ROUTES = [create_batch, get_batch, list_batches, batch_results, cancel_batch]
