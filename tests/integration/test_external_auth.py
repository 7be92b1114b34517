"""AUTH_MODE=maxplatform against a local fake of MAXplatform's `me` endpoint (a real HTTP server).

Replays issue 10 item 3: a profile whose email matched a local admin (in another case) was logged in
as that admin and demoted him; a profile claiming roles ["admin"] became an admin; every unknown
token cost an outbound call; our own `fss_` tokens were forwarded; a revoked token worked for 60 s.
Now users are keyed by (provider, subject), an email collision is refused (403, nothing merged),
roles come only through MAXPLATFORM_ROLE_MAP (else MAXPLATFORM_DEFAULT_ROLE, viewer), own token
formats never leave, refusals are cached and lookups limited per client address, and the positive
cache (the revocation window) is MAXPLATFORM_CACHE_SECONDS.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import make_user
from tests.support.stack import Stack


class FakeMaxplatform:
    """`GET /api/auth/me` answers `profiles[token]` (200) or 401; `calls` counts tokens seen."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.profiles: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                fake.calls[token] += 1
                profile = fake.profiles.get(token) if self.path == "/api/auth/me" else None
                if profile is not None:
                    body = json.dumps(profile).encode()
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

    def add(self, token: str, email: str, roles: list[str] | None = None, sub: str = "") -> str:
        self.profiles[token] = {
            "id": sub or f"sub-{uuid.uuid4().hex}",
            "email": email,
            "name": "Ext",
            "roles": roles or [],
        }
        return str(self.profiles[token]["id"])


@pytest.fixture
def maxplatform() -> Iterator[FakeMaxplatform]:
    fake = FakeMaxplatform()
    yield fake
    fake.server.shutdown()


def me(stack: Stack, token: str, ip: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if ip:
        headers["x-forwarded-for"] = ip
    return httpx.get(f"{stack.base_url}/api/auth/me", headers=headers)


def start(stack: Stack, fake: FakeMaxplatform, **env: str) -> None:
    stack.start_api(
        {
            "AUTH_MODE": "maxplatform",
            "MAXPLATFORM_URL": fake.url,
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            **env,
        }
    )


def unique_email(prefix: str = "ext") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def test_maxplatform_tokens_authenticate_and_create_the_user(
    stack: Stack, maxplatform: FakeMaxplatform, db: psycopg.Connection[Any]
) -> None:
    start(stack, maxplatform)
    email = unique_email("Ext.User")
    sub = maxplatform.add("good-token", email, ["runner", "wizard", "admin"])
    r = me(stack, "good-token")
    assert r.status_code == 200, r.text
    assert r.json()["email"] == email.lower()
    assert r.json()["roles"] == ["viewer"], "claimed roles are ignored without a mapping"
    for _ in range(3):
        assert me(stack, "good-token").status_code == 200
    assert maxplatform.calls["good-token"] == 1, "answers are cached"
    bad = me(stack, "bad")
    assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem")
    (n,) = db.execute(
        """SELECT count(*) FROM external_identities e JOIN users u ON u.id = e.user_id
           WHERE e.provider = 'maxplatform' AND e.subject = %s AND u.email = %s""",
        (sub, email.lower()),
    ).fetchone()
    assert n == 1
    r = httpx.post(
        f"{stack.base_url}/api/v1/flows",
        headers={"Authorization": "Bearer good-token"},
        json={"name": "x", "definition": {"nodes": [{"id": "a", "type": "noop"}]}},
    )
    assert r.status_code == 403, "a viewer cannot build flows"


def test_profile_with_a_local_admins_email_is_refused_not_merged(
    stack: Stack, maxplatform: FakeMaxplatform, db: psycopg.Connection[Any], database_url: str
) -> None:
    admin_email, admin_password = make_user(database_url, role="admin")
    start(stack, maxplatform)
    maxplatform.add("evil-token", admin_email.upper(), ["admin"])
    r = me(stack, "evil-token")
    assert r.status_code == 403, r.text
    assert "never merged" in r.json()["detail"]
    (roles,) = db.execute("SELECT roles FROM users WHERE email = %s", (admin_email,)).fetchone()
    assert roles == ["admin"], "the local admin was not demoted"
    (links,) = db.execute(
        """SELECT count(*) FROM external_identities e JOIN users u ON u.id = e.user_id
           WHERE u.email = %s""",
        (admin_email,),
    ).fetchone()
    assert links == 0
    login = httpx.post(
        f"{stack.base_url}/api/auth/login", json={"email": admin_email, "password": admin_password}
    )
    assert login.status_code == 200
    assert me(stack, login.json()["access_token"]).json()["roles"] == ["admin"]

    # the subject, not the email, is the identity: a later email change keeps the same user, and
    # an email change onto the admin's address does not move the account onto the admin
    email = unique_email()
    sub = maxplatform.add("t1", email)
    first = me(stack, "t1").json()
    maxplatform.add("t2", unique_email("renamed"), sub=sub)
    assert me(stack, "t2").json()["id"] == first["id"]
    maxplatform.add("t3", admin_email, sub=sub)
    third = me(stack, "t3").json()
    assert third["id"] == first["id"] and third["email"] != admin_email

    # a passwordless row made by the old email-keyed code is adopted once, by the first subject
    legacy = unique_email("legacy")
    (legacy_id,) = db.execute(
        "INSERT INTO users (email, roles) VALUES (%s, ARRAY['admin']) RETURNING id", (legacy,)
    ).fetchone()
    maxplatform.add("legacy-token", legacy, ["admin"])
    adopted = me(stack, "legacy-token").json()
    assert adopted["id"] == str(legacy_id) and adopted["roles"] == ["viewer"]
    maxplatform.add("second-claimant", legacy.upper())
    assert me(stack, "second-claimant").status_code == 403


def test_roles_come_only_through_the_configured_mapping(
    stack: Stack, maxplatform: FakeMaxplatform
) -> None:
    start(
        stack,
        maxplatform,
        MAXPLATFORM_ROLE_MAP="builder:editor, platform-ops:admin",
        MAXPLATFORM_DEFAULT_ROLE="runner",
    )
    maxplatform.add("claims-admin", unique_email(), ["admin", "editor"])
    maxplatform.add("builder", unique_email(), ["builder"])
    maxplatform.add("ops", unique_email(), ["platform-ops", "builder"])
    maxplatform.add("nobody", unique_email(), [])
    assert me(stack, "claims-admin").json()["roles"] == ["runner"]
    assert me(stack, "builder").json()["roles"] == ["editor"]
    assert me(stack, "ops").json()["roles"] == ["admin", "editor"]
    assert me(stack, "nobody").json()["roles"] == ["runner"]


def test_lookups_skip_own_tokens_cache_refusals_limit_per_client_and_expire(
    stack: Stack, maxplatform: FakeMaxplatform
) -> None:
    start(
        stack,
        maxplatform,
        MAXPLATFORM_CACHE_SECONDS="1",
        MAXPLATFORM_NEGATIVE_CACHE_SECONDS="60",
        MAXPLATFORM_LOOKUPS_PER_MINUTE="5",
    )
    # our own formats never leave the server
    for own in ("fss_" + "a" * 43, "fst_" + "b" * 43, "fsk_" + "c" * 43):
        assert me(stack, own, "198.51.100.1").status_code == 401
    assert sum(maxplatform.calls.values()) == 0, maxplatform.calls

    # an unknown token costs one call, however often it is tried
    for _ in range(4):
        assert me(stack, "unknown-token", "198.51.100.2").status_code == 401
    assert maxplatform.calls["unknown-token"] == 1

    # fresh tokens from one address: 5 lookups a minute, then 429 without a call
    answers = [me(stack, f"guess-{i}", "198.51.100.3") for i in range(8)]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 3
    assert int(answers[-1].headers["retry-after"]) > 0
    assert sum(maxplatform.calls[f"guess-{i}"] for i in range(8)) == 5
    maxplatform.add("real-user", unique_email())
    assert me(stack, "real-user", "198.51.100.4").status_code == 200, "other clients unaffected"

    # revocation: the token stops working once the 1 s positive cache expires
    del maxplatform.profiles["real-user"]
    time.sleep(1.5)
    assert me(stack, "real-user", "198.51.100.4").status_code == 401
