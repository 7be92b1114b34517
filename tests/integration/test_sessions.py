"""Sessions (issue 10 item 6), over real HTTP and PostgreSQL.

Replayed: sessions survived a password change and a role change, there was no "log out everywhere"
and no idle timeout. Now a password change ends every other session of the user, a role change (any
UPDATE of users.roles) ends all of them, `GET /api/auth/sessions` lists the caller's sessions (never a
token), `DELETE /api/auth/sessions/{id}` ends one (another user's id is 404), `POST
/api/auth/logout-all` ends all, and a session idle longer than SESSION_IDLE_MINUTES or past its
absolute lifetime is refused.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import make_user
from tests.support.stack import Stack


def session(base_url: str, email: str, password: str, agent: str = "pytest") -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30, headers={"user-agent": agent})
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    client.headers["authorization"] = f"Bearer {r.json()['access_token']}"
    client.cookies.clear()
    return client


def alive(client: httpx.Client) -> bool:
    status = client.get("/api/auth/me").status_code
    assert status in (200, 401)
    return status == 200


@pytest.fixture
def user(database_url: str) -> tuple[str, str]:
    return make_user(database_url)


def test_password_change_ends_every_other_session(
    running_stack: Stack, user: tuple[str, str]
) -> None:
    email, password = user
    base = running_stack.base_url
    here, there = session(base, email, password), session(base, email, password)
    new = "a-new-password-123"

    wrong = here.post("/api/auth/password", json={"current_password": "nope", "new_password": new})
    assert wrong.status_code == 403 and wrong.json()["errors"][0]["path"] == "body.current_password"
    short = here.post(
        "/api/auth/password", json={"current_password": password, "new_password": "x"}
    )
    assert short.status_code == 422 and short.json()["errors"][0]["path"] == "body.new_password"
    key = here.post("/api/v1/api-keys", json={"name": "k"}).json()["key"]
    by_key = httpx.post(
        f"{base}/api/auth/password",
        json={"current_password": password, "new_password": new},
        headers={"x-api-key": key},
    )
    assert by_key.status_code == 403, "a key cannot change the password"
    assert alive(there)

    r = here.post("/api/auth/password", json={"current_password": password, "new_password": new})
    assert r.status_code == 204, r.text
    assert alive(here), "the session that changed the password stays"
    assert not alive(there), "every other session ended"
    login = httpx.post(f"{base}/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 401
    session(base, email, new)


def test_role_change_ends_the_users_sessions(
    running_stack: Stack, user: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    email, password = user
    a, b = session(running_stack.base_url, email, password), session(
        running_stack.base_url, email, password
    )
    db.execute("UPDATE users SET name = 'renamed' WHERE email = %s", (email,))
    assert alive(a) and alive(b), "other updates keep sessions"
    db.execute("UPDATE users SET roles = ARRAY['viewer'] WHERE email = %s", (email,))
    assert not alive(a) and not alive(b)
    fresh = session(running_stack.base_url, email, password)
    assert fresh.get("/api/auth/me").json()["roles"] == ["viewer"]


def test_logout_all_ends_every_session(running_stack: Stack, user: tuple[str, str]) -> None:
    email, password = user
    clients = [session(running_stack.base_url, email, password) for _ in range(3)]
    r = clients[0].post("/api/auth/logout-all")
    assert r.status_code == 204
    assert not any(alive(c) for c in clients)


def test_sessions_are_listed_and_revoked_by_their_owner_only(
    running_stack: Stack, user: tuple[str, str], database_url: str
) -> None:
    email, password = user
    base = running_stack.base_url
    laptop = session(base, email, password, agent="laptop-browser")
    phone = session(base, email, password, agent="phone-browser")
    r = laptop.get("/api/auth/sessions")
    assert r.status_code == 200
    listed = r.json()
    assert {s["user_agent"] for s in listed} == {"laptop-browser", "phone-browser"}
    assert [s["current"] for s in listed if s["user_agent"] == "laptop-browser"] == [True]
    assert all({"id", "created_at", "last_seen_at", "ip"} <= set(s) for s in listed)
    for token in (laptop.headers["authorization"][7:], phone.headers["authorization"][7:]):
        assert token not in r.text
    phone_id = next(s["id"] for s in listed if s["user_agent"] == "phone-browser")

    stranger = session(base, *make_user(database_url))
    assert stranger.delete(f"/api/auth/sessions/{phone_id}").status_code == 404
    assert phone_id not in stranger.get("/api/auth/sessions").text
    assert alive(phone)

    assert laptop.delete(f"/api/auth/sessions/{phone_id}").status_code == 204
    assert not alive(phone) and alive(laptop)
    assert laptop.delete(f"/api/auth/sessions/{phone_id}").status_code == 404


def test_session_past_its_absolute_lifetime_is_refused(
    running_stack: Stack, user: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    client = session(running_stack.base_url, *user)
    (sid,) = db.execute(
        "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = %s",
        (user[0],),
    ).fetchone()
    db.execute("UPDATE sessions SET expires_at = now() WHERE id = %s", (sid,))
    assert not alive(client)


def test_idle_session_is_refused_and_activity_keeps_it(stack: Stack, user: tuple[str, str]) -> None:
    stack.start_api({"SESSION_IDLE_MINUTES": "0.1"})  # 6 s idle; last_seen moves every 3 s
    busy, idle = session(stack.base_url, *user), session(stack.base_url, *user)
    for _ in range(10):  # 10 s of activity, longer than the idle timeout
        assert alive(busy)
        time.sleep(1)
    assert not alive(idle), "idle longer than SESSION_IDLE_MINUTES"
    time.sleep(7)
    assert not alive(busy)


def test_last_seen_is_written_at_most_once_a_minute(
    running_stack: Stack, user: tuple[str, str], db: psycopg.Connection[Any]
) -> None:
    client = session(running_stack.base_url, *user)
    query = "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = %s"
    (sid,) = db.execute(query, (user[0],)).fetchone()
    (fresh,) = db.execute(
        "UPDATE sessions SET last_seen_at = now() - interval '30 seconds' WHERE id = %s "
        "RETURNING last_seen_at",
        (sid,),
    ).fetchone()
    for _ in range(20):
        assert alive(client)
    (after,) = db.execute("SELECT last_seen_at FROM sessions WHERE id = %s", (sid,)).fetchone()
    assert after == fresh, "no write while last_seen_at is under a minute old"
    db.execute(
        "UPDATE sessions SET last_seen_at = now() - interval '90 seconds' WHERE id = %s", (sid,)
    )
    assert alive(client)
    (moved,) = db.execute(
        "SELECT now() - last_seen_at < interval '10 seconds' FROM sessions WHERE id = %s", (sid,)
    ).fetchone()
    assert moved
