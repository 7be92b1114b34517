"""AUTH_MODE=maxplatform: bearer tokens are validated by MAXplatform's `me` endpoint (a real local
HTTP server here), cached briefly, and the user is created locally on first sight."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.stack import Stack


class FakeMaxplatform:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                fake.calls[token] += 1
                if self.path == "/api/auth/me" and token == "good-token":
                    body = json.dumps(
                        {
                            "email": "Ext.User@example.com",
                            "name": "Ext",
                            "roles": ["runner", "wizard"],
                        }
                    ).encode()
                    self.send_response(200)
                else:
                    body = b'{"detail": "nope"}'
                    self.send_response(401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def maxplatform() -> Iterator[FakeMaxplatform]:
    fake = FakeMaxplatform()
    yield fake
    fake.server.shutdown()


def test_maxplatform_tokens_authenticate_and_create_the_user(
    stack: Stack, maxplatform: FakeMaxplatform, db: psycopg.Connection[Any]
) -> None:
    stack.start_api({"AUTH_MODE": "maxplatform", "MAXPLATFORM_URL": maxplatform.url})
    me = httpx.get(f"{stack.base_url}/api/auth/me", headers={"Authorization": "Bearer good-token"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "ext.user@example.com" and me.json()["roles"] == ["runner"]
    for _ in range(3):
        assert (
            httpx.get(
                f"{stack.base_url}/api/auth/me", headers={"Authorization": "Bearer good-token"}
            ).status_code
            == 200
        )
    assert maxplatform.calls["good-token"] == 1, "answers are cached"
    bad = httpx.get(f"{stack.base_url}/api/auth/me", headers={"Authorization": "Bearer bad"})
    assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem")
    (n,) = db.execute("SELECT count(*) FROM users WHERE email = 'ext.user@example.com'").fetchone()
    assert n == 1
    r = httpx.post(
        f"{stack.base_url}/api/v1/flows",
        headers={"Authorization": "Bearer good-token"},
        json={"name": "x", "definition": {"nodes": [{"id": "a", "type": "noop"}]}},
    )
    assert r.status_code == 403, "a runner cannot build flows"
