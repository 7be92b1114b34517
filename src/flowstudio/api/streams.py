"""Long-lived responses (SSE run events, streamed sync runs, OpenAI streams) stay authorized.

A stream outlives the request that opened it: after logout, a revoked API key or a deleted session it
must not keep delivering a run's outputs. `guarded_stream(request, user, source, on_revoked)` wraps a
stream's messages: it holds one of the user's stream slots (`StreamSlots`, STREAMS_PER_USER per API
process; over the cap `acquire` answers 429 before the stream starts) and, every STREAM_RECHECK_S
(checked as messages pass; the run streams send a keepalive at least every 10 s), looks the
request's credentials up again (`deps.authenticated_row`): gone, or naming another user, the stream
sends `on_revoked` and closes. `still_authorized(request, user)` is the one-shot check a waiting
sync run makes before it answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from litestar.response import ServerSentEventMessage

from flowstudio.api.deps import AnyRequest, User, authenticated_row
from flowstudio.api.errors import too_many

log = logging.getLogger(__name__)


class StreamSlots:
    """Open streams per user in this API process."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.open: dict[str, int] = {}

    def acquire(self, user_id: str) -> None:
        if self.open.get(user_id, 0) >= self.per_user:
            raise too_many(f"at most {self.per_user} open streams per user; close one first", "5")
        self.open[user_id] = self.open.get(user_id, 0) + 1

    def release(self, user_id: str) -> None:
        left = self.open.get(user_id, 0) - 1
        if left > 0:
            self.open[user_id] = left
        else:
            self.open.pop(user_id, None)


async def still_authorized(request: AnyRequest, user: User) -> bool:
    async with request.app.state.pool.connection() as conn:
        row = await authenticated_row(request, conn)
    return row is not None and str(row["id"]) == user.id


def revoked_event() -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data='{"status": 401, "detail": "credentials revoked; stream closed"}', event="error"
    )


def reserve_stream(request: AnyRequest, user: User) -> None:
    """Take a stream slot before starting work the stream would report (429 when full); hand it to
    `guarded_stream(..., reserved=True)` or give it back with `release_stream`."""
    request.app.state.streams.acquire(user.id)


def release_stream(request: AnyRequest, user: User) -> None:
    request.app.state.streams.release(user.id)


def guarded_stream(
    request: AnyRequest,
    user: User,
    source: AsyncIterator[ServerSentEventMessage],
    on_revoked: ServerSentEventMessage | None = None,
    reserved: bool = False,
) -> AsyncIterator[ServerSentEventMessage]:
    """Take a stream slot now (429 when full) unless `reserved`, then relay `source` while the
    credentials hold; the slot is given back when the stream ends."""
    slots: StreamSlots = request.app.state.streams
    if not reserved:
        slots.acquire(user.id)
    return _relay(request, user, source, on_revoked or revoked_event(), slots)


async def _relay(
    request: AnyRequest,
    user: User,
    source: AsyncIterator[ServerSentEventMessage],
    on_revoked: ServerSentEventMessage,
    slots: StreamSlots,
) -> AsyncIterator[ServerSentEventMessage]:
    every = request.app.state.settings.stream_recheck_s
    checked = time.monotonic()
    try:
        async for message in source:
            if time.monotonic() - checked >= every:
                checked = time.monotonic()
                if not await still_authorized(request, user):
                    log.info("stream of user %s closed: credentials revoked", user.id)
                    yield on_revoked
                    return
            yield message
    finally:
        slots.release(user.id)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
