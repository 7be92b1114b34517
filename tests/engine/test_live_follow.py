"""A live follower's watch survives a steady stream of LLM tokens (api/events.py, migration 0034).

Only a watched run's commits NOTIFY, and the API's SSE follower renews its watch when it reads the
run. It used to read again only after KEEPALIVE_S without tokens: while an LLM streamed tokens
faster than that, it never read, its watch ran out (WATCH_S) and the run's commits stopped
NOTIFYing; a step's success reached the stream only after the tokens paused (found by a review,
replayed here). Scaled down (keepalive 0.25 s, watch 0.75 s): tokens are pushed every 0.1 s, and
a step that commits 1.5 s into them must reach the stream while they still flow (they flow 6 s).
`slow_client`: the consumer takes 0.15 s per token message (a backpressured client: each send
waits for the socket), so tokens are always pending when the follower looks; it went back to its
read only once they stopped, until the keepalive deadline was checked before pending tokens (a
later review, replayed here too). The real EventHub (its LISTEN connection) and a pool as the API's, on this test's database.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from flowstudio.api import events
from flowstudio.store.db import open_pool
from tests.support.engine_env import EngineEnv
from tests.support.flows import chain
from tests.support.templatedb import settings_for

pytestmark = pytest.mark.anyio
TWO = chain(("a", "noop", {}), ("b", "noop", {}))
TOKENS = 60  # one every 0.1 s


@pytest.mark.parametrize("per_token_s", [0.0, 0.15], ids=["fast_client", "slow_client"])
async def test_a_step_reaches_the_stream_while_tokens_flow(
    env: EngineEnv, monkeypatch: pytest.MonkeyPatch, per_token_s: float
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE_S", 0.25)
    monkeypatch.setattr(events, "WATCH_S", 0.75)
    settings = settings_for(env.url)
    pool = await open_pool(settings, max_size=4)
    hub = events.EventHub(settings)
    rid = await env.start(TWO)
    await env.run_node(rid, "in")
    pushed = 0
    seen_after: int | None = None  # how many tokens had been pushed when a's success arrived
    seen = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub.run)
            await anyio.sleep(0.3)  # the hub LISTENs

            async def follow() -> None:
                nonlocal seen_after
                async for message in events.stream_run_events(pool, hub, rid, 0):
                    if message.event == "token":
                        await anyio.sleep(per_token_s)
                        continue
                    data: Any = json.loads(message.data) if message.event == "step" else {}
                    if data.get("node_id") == "a" and data.get("to_status") == "succeeded":
                        seen_after = pushed
                        seen.set()
                        return

            async def tokens() -> None:
                nonlocal pushed
                for i in range(TOKENS):
                    token = {"run_id": rid, "node_id": "llm", "seq": i, "text": "t"}
                    hub._push_token(json.dumps(token))
                    pushed += 1
                    await anyio.sleep(0.1)

            tg.start_soon(follow)
            tg.start_soon(tokens)
            await anyio.sleep(1.5)  # twice the watch: without renewals it has run out
            await env.run_node(rid, "a")
            with anyio.move_on_after(30):
                await seen.wait()
            tg.cancel_scope.cancel()
    finally:
        await pool.close()
    assert seen_after is not None, "the step's success never reached the stream"
    assert seen_after < TOKENS, "the step's success reached the stream only after the tokens"
