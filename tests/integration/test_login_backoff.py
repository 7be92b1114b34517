"""Login backoff instead of a hard lock (issue 10 item 4), over real HTTP and PostgreSQL.

The attack: ten wrong passwords from ten addresses locked the real owner out for 15 minutes. Now
failures are counted per (email, address), per address and per email with growing delays (429 +
Retry-After), and a client that logged in before (its address or its `fs_device` cookie) only meets
its own counter, so the owner still gets in. Client addresses come from X-Forwarded-For, which
uvicorn trusts from loopback (FORWARDED_ALLOW_IPS, set explicitly below where a stack is started).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import make_user
from tests.support.stack import Stack

TRUST_LOOPBACK = {"FORWARDED_ALLOW_IPS": "127.0.0.1"}


@pytest.fixture
def fake_ips(db: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """Client addresses from TEST-NET-3, sent as X-Forwarded-For; their rows are removed after."""
    base = random.randint(0, 200)
    ips = [f"203.0.113.{base + i}" for i in range(40)]
    yield ips
    db.execute("DELETE FROM login_attempts WHERE ip = ANY(%s)", (ips,))


def login(
    base_url: str, email: str, password: str, ip: str, client: httpx.Client | None = None
) -> httpx.Response:
    http = client or httpx
    return http.post(  # type: ignore[no-any-return]
        f"{base_url}/api/auth/login",
        json={"email": email, "password": password},
        headers={"x-forwarded-for": ip},
    )


def test_failures_from_ten_addresses_do_not_lock_the_owner_out(
    running_stack: Stack, database_url: str, fake_ips: list[str]
) -> None:
    email, password = make_user(database_url)
    base, home = running_stack.base_url, fake_ips[39]
    assert login(base, email, password, home).status_code == 200  # the owner's usual client
    for i in range(10):
        assert login(base, email, "wrong-password", fake_ips[i]).status_code == 401
    assert login(base, email, password, home).status_code == 200
    assert login(base, email, password, fake_ips[20]).status_code == 200  # a new client, too


def test_repeated_failures_from_one_address_get_growing_delays(
    running_stack: Stack, database_url: str, fake_ips: list[str]
) -> None:
    email, password = make_user(database_url)
    base, ip = running_stack.base_url, fake_ips[0]
    for _ in range(5):  # LOGIN_FREE_FAILURES
        assert login(base, email, "wrong-password", ip).status_code == 401
    waits = []
    for _ in range(3):
        blocked = login(base, email, password, ip)  # even the right password: no oracle
        assert blocked.status_code == 429, blocked.text
        assert blocked.headers["content-type"].startswith("application/problem+json")
        waits.append(int(blocked.headers["retry-after"]))
        time.sleep(waits[-1] + 0.3)
        assert login(base, email, "wrong-password", ip).status_code == 401
    print(f"Retry-After after 5, 6, 7 failures: {waits}")
    assert waits == sorted(waits) and waits[-1] > waits[0], waits
    # other addresses are not slowed by this one's failures (5 < LOGIN_EMAIL_FREE_FAILURES)
    assert login(base, email, password, fake_ips[1]).status_code == 200


def test_spraying_many_emails_from_one_address_slows_that_address_only(
    running_stack: Stack, database_url: str, fake_ips: list[str]
) -> None:
    email, password = make_user(database_url)
    base, ip = running_stack.base_url, fake_ips[30]
    for _ in range(20):  # LOGIN_IP_FREE_FAILURES
        nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        assert login(base, nobody, "whatever-pw", ip).status_code == 401
    blocked = login(base, email, password, ip)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert login(base, email, password, fake_ips[31]).status_code == 200


def test_known_client_by_address_or_device_cookie_gets_in_while_the_email_is_under_attack(
    stack: Stack, database_url: str, fake_ips: list[str]
) -> None:
    stack.start_api({**TRUST_LOOPBACK, "LOGIN_EMAIL_FREE_FAILURES": "3"})
    base = stack.base_url
    email, password = make_user(database_url)
    browser = httpx.Client()
    assert login(base, email, password, fake_ips[0], browser).status_code == 200
    assert browser.cookies.get("fs_device")

    answers = [login(base, email, "wrong-password", fake_ips[1 + i]).status_code for i in range(10)]
    assert set(answers) <= {401, 429} and 429 in answers, answers
    # unknown clients now wait, whatever password they send
    assert login(base, email, password, fake_ips[20]).status_code == 429
    # the owner's address that logged in before gets in
    assert login(base, email, password, fake_ips[0]).status_code == 200
    # so does the owner's browser from a new address, by its device cookie
    assert login(base, email, password, fake_ips[21], browser).status_code == 200


def test_oversized_login_fields_are_422_with_the_field_path(running_stack: Stack) -> None:
    for body, path in (
        ({"email": "a" * 400 + "@example.com", "password": "x"}, "body.email"),
        ({"email": "a@example.com", "password": "x" * 2000}, "body.password"),
    ):
        r = httpx.post(f"{running_stack.base_url}/api/auth/login", json=body)
        assert r.status_code in (400, 422), r.text
        assert path in r.text
