"""A local OpenAI-compatible provider for `flowstudio bench --llm`: fixed latency, a cap, counted.

`FakeProvider(latency, cap, rpm, retry_after)` is a plain ASGI app; `serve()` runs it under uvicorn
on 127.0.0.1 (a free port) in a thread with its own event loop; `base_url` is its `/v1` root. It ships
in the package (the bench runs from an installed wheel; tests/support/fake_openai.py is test-only).

POST /v1/chat/completions: a call arriving while `cap` calls are in flight (or, with `rpm`, once
`rpm` calls started in the last 60 s) answers 429 with `Retry-After` (whole seconds, rounded up) and
`retry-after-ms`; otherwise it takes `latency` seconds and answers `answer_for(<last user message>)`,
deterministic so that the bench can check every item. `stream: true` spreads that time over SSE
chunks (one per word, then usage with `stream_options.include_usage`, then `[DONE]`). Anything else
is 404. `stats` records accepted calls, 429s, the peak and the time integral of calls in flight (its
mean over a window is the provider's effective concurrency) and the first and last call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn

log = logging.getLogger(__name__)
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MODEL = "fake-bench"


def answer_for(prompt: str) -> str:
    """The provider's answer to a prompt: it names the prompt and a digest of it."""
    return f"answer to {prompt} #{hashlib.sha256(prompt.encode()).hexdigest()[:12]}"


@dataclass
class ProviderStats:
    calls: int = 0  # accepted (answered 200)
    rejected_429: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    busy_area: float = 0.0  # integral of calls in flight over time (call-seconds)
    first_call: float | None = None  # time.monotonic() of the first accepted call
    last_done: float | None = None  # ... and of the last answer completed
    rejected_at: list[float] = field(default_factory=list)  # seconds after the first call
    by_second: list[float] = field(default_factory=list)  # call-seconds per second since the first
    _since: float = field(default_factory=time.monotonic)

    def _advance(self, now: float) -> None:
        area = self.in_flight * (now - self._since)
        self.busy_area += area
        self._since = now
        if self.first_call is not None and area:  # events are ms apart: credit the current second
            second = int(now - self.first_call)
            self.by_second.extend([0.0] * (second + 1 - len(self.by_second)))
            self.by_second[second] += area

    def enter(self) -> None:
        now = time.monotonic()
        self._advance(now)
        self.calls += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.first_call is None:
            self.first_call = now

    def reject(self) -> None:
        self.rejected_429 += 1
        now = time.monotonic()
        self.rejected_at.append(round(now - (self.first_call or now), 2))

    def leave(self) -> None:
        now = time.monotonic()
        self._advance(now)
        self.in_flight -= 1
        self.last_done = now

    def snapshot(self) -> dict[str, Any]:
        self._advance(time.monotonic())
        return {
            "calls": self.calls,
            "rejected_429": self.rejected_429,
            "peak_in_flight": self.peak_in_flight,
            "busy_call_seconds": round(self.busy_area, 3),
            "in_flight_by_second": [round(a, 1) for a in self.by_second],
            "rejected_at": self.rejected_at[:100],
        }


def _last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    completion = len(answer.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class FakeProvider:
    def __init__(self, *, latency: float, cap: int, rpm: int = 0, retry_after: float = 1.0) -> None:
        self.latency = latency
        self.cap = cap
        self.rpm = rpm
        self.retry_after = retry_after
        self.stats = ProviderStats()
        self.started: deque[float] = deque()  # accepted call starts in the last 60 s (rpm)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_stats(self) -> None:
        """Fresh counters for the next batch (no call may be in flight)."""
        self.stats = ProviderStats()

    def _refusal_wait(self) -> float | None:
        """Seconds to ask the caller to wait, or None if the call is accepted now."""
        if self.stats.in_flight >= self.cap:
            return self.retry_after
        if self.rpm:
            now = time.monotonic()
            while self.started and now - self.started[0] >= 60.0:
                self.started.popleft()
            if len(self.started) >= self.rpm:
                return max(self.retry_after, 60.0 - (now - self.started[0]))
            self.started.append(now)
        return None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
            await _json(send, 404, {"error": {"message": f"no route {scope['path']}"}})
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            await _json(send, 400, {"error": {"message": "body is not JSON"}})
            return
        wait = self._refusal_wait()
        if wait is not None:
            self.stats.reject()
            headers = [
                (b"retry-after", str(math.ceil(wait)).encode()),
                (b"retry-after-ms", str(round(wait * 1000)).encode()),
            ]
            await _json(send, 429, {"error": {"message": "rate limited"}}, headers)
            return
        self.stats.enter()
        left = False
        try:
            answer = answer_for(_last_user_message(request))
            if request.get("stream"):
                await self._stream(send, request, answer)
            else:
                await anyio.sleep(self.latency)
                # the generation is done: its slot is free before the answer is on the wire (a
                # send that waits for the socket must not count as a call in flight)
                self.stats.leave()
                left = True
                await _json(send, 200, _completion(request, answer))
        finally:
            if not left:
                self.stats.leave()

    async def _stream(self, send: Send, request: dict[str, Any], answer: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        words = answer.split(" ")
        pause = self.latency / len(words)
        for i, word in enumerate(words):
            await anyio.sleep(pause)
            delta = {"content": word if i == 0 else " " + word}
            await _event(
                send, _chunk(request, [{"index": 0, "delta": delta, "finish_reason": None}])
            )
        await _event(send, _chunk(request, [{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (request.get("stream_options") or {}).get("include_usage"):
            await _event(send, {**_chunk(request, []), "usage": _usage(request, answer)})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    @contextlib.contextmanager
    def serve(self) -> Iterator[FakeProvider]:
        """Serve on 127.0.0.1 (a free port) from a thread of its own for the duration of the block
        (its own event loop: the caller's loop and exceptions stay the caller's)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by accepted connections: without it uvicorn's two writes per answer (head,
        # body) met Nagle + delayed ACK and every answer came ~40 ms after its `latency`
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_level="warning",
            access_log=False,
            backlog=4096,
            timeout_keep_alive=60,
            # the stand-in for a remote server stays on asyncio's loop whatever EVENT_LOOP says
            # (uvicorn's "auto" takes uvloop when installed): the engine's loop is what is measured
            loop="asyncio",
        )
        server = uvicorn.Server(config)  # not the main thread: it leaves signals alone
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake provider did not start")
            time.sleep(0.01)
        log.info("fake provider on %s (latency %gs, cap %d)", self.base_url, self.latency, self.cap)
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


def _chunk(request: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model") or MODEL,
        "choices": choices,
    }


def _completion(request: dict[str, Any], answer: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(request, answer),
    }


async def _event(send: Send, payload: dict[str, Any]) -> None:
    data = b"data: " + json.dumps(payload).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _json(
    send: Send,
    status: int,
    payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
