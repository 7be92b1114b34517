"""A local OpenAI-compatible server for LLM and embedding tests: real HTTP on 127.0.0.1, deterministic.

`FakeOpenAI()` runs a ThreadingHTTPServer in a thread. `base_url(**opts)` gives the `/v1` root to put
in a node's `base_url`; the options ride in the path (`/o/rate_limit=2,delay=0.1/v1`), so concurrent
flows each get their own behaviour:
- `rate_limit=N`: the first N calls per Idempotency-Key answer 429 with `Retry-After: retry_after` (1);
- `fail=N`: the first N calls per key answer 500; `status=S`: every call answers S (e.g. 401);
- `first_delay=S`: wait before answering; `delay=S`: wait between streamed chunks;
- `gate=N`: wait before answering until the test calls `open_gate(N)` (at most 60 s): e.g. until
  its SSE stream is subscribed, since live tokens reach only the streams open when they are sent;
- `pad=N`: append N words `w0 .. wN-1` to the answer (long streams);
- `cap=N`: a provider that allows N chat calls in flight at once (server-wide) and answers 429 with
  `Retry-After: retry_after` (1) beyond that (after `first_delay`, or at once with
  `refuse_at_once=1`, as a real provider's gateway does); `hang_calls=N,hang=S`: the server's
  first N chat calls wait S (calls a test kills its worker in the middle of);
- `echo_key=1`: a careless server that repeats the caller's API key: the answer ends with
  `key <the bearer token>`, and `fail=N` errors say `boom for key <token>` (masking tests);
- `set_cookie=1`: a chat answer sets a cookie `session=<the last user message>` (the cookie
  isolation test reads the `cookie` header of the next calls in `requests`).
POST /v1/chat/completions answers `echo: <last user message>` (+ pad); with `tools` and no tool
message yet it calls the first tool with `{"query": <last user message>}`; after a tool message it
answers `tool said: <content>`; with `response_format` it answers JSON built from the schema (an enum
takes the value the user message mentions). `stream: true` sends SSE chunks, one per word, then usage
(if `stream_options.include_usage`) and `[DONE]`. POST /v1/embeddings returns bag-of-words vectors
(`embed`). `requests` records each call (path, lower-cased headers, body); `calls[key]` counts chat calls per
Idempotency-Key; `chunks[key]` counts streamed chunks sent (to time a kill mid-stream); `starts`
holds the monotonic start time of every chat call, `in_flight` / `peak` the chat calls being
answered now / at most at once (a provider-limit test reads them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIMS = 64


def embed(text: str) -> list[float]:
    vec = [0.0] * DIMS
    for word in re.findall(r"\w+", text.lower()):
        h = hashlib.md5(word.encode()).digest()
        vec[h[0] % DIMS] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def bearer(h: BaseHTTPRequestHandler) -> str:
    return str(h.headers.get("authorization", "")).removeprefix("Bearer ")


def words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages)


def from_schema(schema: dict[str, Any], said: str) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        hits = [v for v in schema["enum"] if str(v).lower() in said.lower()]
        return (hits or schema["enum"])[0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: from_schema(v, said) for k, v in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return len(said.split())
    if kind == "boolean":
        return True
    return said


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.chunks: Counter[str] = Counter()
        self.starts: list[float] = []
        self.in_flight = 0
        self.peak = 0
        self.gates: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake.handle(self)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def base_url(self, **opts: object) -> str:
        prefix = "/o/" + ",".join(f"{k}={v}" for k, v in opts.items()) if opts else ""
        return f"http://127.0.0.1:{self.port}{prefix}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gate(self, n: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(n, threading.Event())

    def open_gate(self, n: int) -> None:
        self.gate(n).set()

    def chat_requests(self, key_prefix: str = "") -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["path"].endswith("/chat/completions") and r["key"].startswith(key_prefix)
        ]

    # ---------------------------------------------------------------- request handling

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        opts: dict[str, Any] = {}
        if path.startswith("/o/"):
            _, _, spec, path = path.split("/", 3)
            path = "/" + path
            opts = {k: float(v) for k, v in (p.split("=") for p in spec.split(",") if p)}
        body = json.loads(h.rfile.read(int(h.headers.get("content-length") or 0)) or b"{}")
        key = h.headers.get("Idempotency-Key", "")
        with self.lock:
            self.requests.append(
                {
                    "path": path,
                    "headers": {k.lower(): v for k, v in h.headers.items()},
                    "body": body,
                    "key": key,
                }
            )
            chat = path.endswith("/chat/completions")
            if chat:
                self.calls[key] += 1
                self.starts.append(time.monotonic())
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            n = self.calls[key]
            hang = chat and len(self.starts) <= opts.get("hang_calls", 0)
            over_cap = chat and self.in_flight > opts.get("cap", float("inf"))
        try:
            if hang:
                time.sleep(opts.get("hang", 60))
            self.respond(h, path, body, opts, key, n, over_cap)
        finally:
            if chat:
                with self.lock:
                    self.in_flight -= 1

    def respond(
        self,
        h: BaseHTTPRequestHandler,
        path: str,
        body: dict[str, Any],
        opts: dict[str, Any],
        key: str,
        n: int,
        over_cap: bool,
    ) -> None:
        if "gate" in opts:
            self.gate(int(opts["gate"])).wait(60)
        if not (over_cap and opts.get("refuse_at_once")):
            time.sleep(opts.get("first_delay", 0))
        try:
            if over_cap:
                headers = {"Retry-After": str(opts.get("retry_after", 1))}
                return self.send(h, 429, {"error": {"message": "over capacity"}}, headers)
            if "status" in opts:
                return self.send(h, int(opts["status"]), {"error": {"message": "no you don't"}})
            if path.endswith("/chat/completions") and n <= opts.get("rate_limit", 0):
                headers = {"Retry-After": str(opts.get("retry_after", 1))}
                return self.send(h, 429, {"error": {"message": "slow down"}}, headers)
            if path.endswith("/chat/completions") and n <= opts.get("fail", 0):
                said = f"boom for key {bearer(h)}" if opts.get("echo_key") else "boom"
                return self.send(h, 500, {"error": {"message": said}})
            if path.endswith("/embeddings"):
                return self.embeddings(h, body)
            if path.endswith("/chat/completions"):
                if opts.get("echo_key"):
                    opts = {**opts, "key": bearer(h)}
                return self.chat(h, body, opts, key)
            return self.send(h, 404, {"error": {"message": f"no route {path}"}})
        except OSError:
            return  # the client went away (a killed worker)

    def send(
        self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(texts):
            vec: Any = embed(text)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{DIMS}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": n, "total_tokens": n}
        payload = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        self.send(h, 200, payload)

    def answer(self, body: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
        """The assistant message: content or tool_calls, and the finish reason."""
        messages = body.get("messages") or []
        said = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        tool_msgs = [m for m in messages if m["role"] == "tool"]
        if body.get("tools") and not tool_msgs:
            name = body["tools"][0]["function"]["name"]
            call = {"id": "call_1", "name": name, "arguments": json.dumps({"query": said})}
            return {"content": None, "tool_calls": [call], "finish_reason": "tool_calls"}
        if tool_msgs:
            text = f"tool said: {tool_msgs[-1]['content']}"
        elif body.get("response_format"):
            fmt = body["response_format"]
            schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
            value = from_schema(schema, said) if fmt["type"] == "json_schema" else {"answer": said}
            text = json.dumps(value)
        else:
            text = f"echo: {said}"
        pad = int(opts.get("pad", 0))
        if pad:
            text += " " + " ".join(f"w{i}" for i in range(pad))
        if opts.get("key"):
            text += f" key {opts['key']}"
        return {"content": text, "tool_calls": None, "finish_reason": "stop"}

    def usage(self, body: dict[str, Any], ans: dict[str, Any]) -> dict[str, int]:
        prompt = words(body.get("messages") or [])
        completion = len((ans["content"] or "").split()) or 1
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def chat(
        self, h: BaseHTTPRequestHandler, body: dict[str, Any], opts: dict[str, Any], key: str
    ) -> None:
        ans = self.answer(body, opts)
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": body["model"]}
        said = re.sub(r"\W", "-", str(body["messages"][-1].get("content") or ""))
        cookie = {"Set-Cookie": f"session={said}; Path=/"} if opts.get("set_cookie") else None
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": ans["content"]}
            if ans["tool_calls"]:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {k: c[k] for k in ("name", "arguments")},
                    }
                    for c in ans["tool_calls"]
                ]
            choice = {"index": 0, "message": message, "finish_reason": ans["finish_reason"]}
            payload = {**base, "object": "chat.completion", "choices": [choice]}
            return self.send(h, 200, {**payload, "usage": self.usage(body, ans)}, cookie)
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        for k, v in (cookie or {}).items():
            h.send_header(k, v)
        h.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}

        def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
            h.wfile.write(
                f"data: {json.dumps({**chunk, 'choices': choices, **extra})}\n\n".encode()
            )
            h.wfile.flush()
            with self.lock:
                self.chunks[key] += 1

        emit([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        pieces = (ans["content"] or "").split(" ")
        for i, piece in enumerate(pieces):
            time.sleep(opts.get("delay", 0))
            text = piece if i == len(pieces) - 1 else piece + " "
            if text:
                emit([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
        for i, c in enumerate(ans["tool_calls"] or []):
            args = c["arguments"]
            first = {"index": i, "id": c["id"], "type": "function"}
            emit(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {**first, "function": {"name": c["name"], "arguments": args[:5]}}
                            ]
                        },
                        "finish_reason": None,
                    }
                ]
            )
            emit(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [{"index": i, "function": {"arguments": args[5:]}}]
                        },
                        "finish_reason": None,
                    }
                ]
            )
        emit([{"index": 0, "delta": {}, "finish_reason": ans["finish_reason"]}])
        if (body.get("stream_options") or {}).get("include_usage"):
            emit([], usage=self.usage(body, ans))
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
