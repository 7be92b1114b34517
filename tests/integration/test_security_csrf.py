"""Issue 10 item 2 replayed: cross-site request forgery with only the session cookie, and the cookie.

The attacks (a page on another origin — another port or a sibling subdomain is enough, SameSite=Lax
does not stop those — makes the browser send the session cookie): a `text/plain` body carrying JSON
created a secret, an API key and a share; a form POST started a webhook run; a multipart POST started
a batch. Now each is refused (403 on the Origin, nothing created), while the designer's own requests
(same origin, JSON), programs with a bearer token or API key, and cookie clients without an Origin
(not browsers) still work. JSON routes refuse other content types (415) whatever the credentials.
Over TLS (X-Forwarded-Proto from a trusted proxy) the cookie is `__Host-fs_session; Secure`; from a
peer outside FORWARDED_ALLOW_IPS the header is ignored.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

EVIL = "http://evil.example"


def login(base_url: str, email: str, password: str, **headers: str) -> httpx.Response:
    r = httpx.post(
        f"{base_url}/api/auth/login", json={"email": email, "password": password}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r


@pytest.fixture
def victim(running_stack: Stack, database_url: str) -> tuple[Api, httpx.Client]:
    """The victim's bearer client (to look) and a client holding only their session cookie."""
    email, password = make_user(database_url)
    bearer = Api(running_stack.base_url, email, password)
    token = login(running_stack.base_url, email, password).cookies["fs_session"]
    browser = httpx.Client(base_url=running_stack.base_url, timeout=30)
    browser.cookies.set("fs_session", token)
    return bearer, browser


def refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "header.Origin" in [e["path"] for e in r.json()["errors"]]


def test_cookie_only_requests_from_another_origin_create_nothing(
    victim: tuple[Api, httpx.Client], database_url: str, running_stack: Stack
) -> None:
    bearer, browser = victim
    fid = bearer.create_flow(linear_flow(("t", "template", {"template": "x"})))["id"]
    other = make_user(database_url)[0]  # a real account: the share would have worked
    name = "S" + uuid.uuid4().hex[:8].upper()
    text_plain = {"content-type": "text/plain", "origin": EVIL}
    attacks = [
        ("/api/v1/secrets", f'{{"name": "{name}", "value": "pwned"}}', text_plain),
        ("/api/v1/api-keys", '{"name": "pwned"}', text_plain),
        (f"/api/v1/flows/{fid}/shares", f'{{"email": "{other}"}}', text_plain),
        (
            f"/api/v1/webhook/{fid}",
            "a=1&b=2",
            {"content-type": "application/x-www-form-urlencoded", "origin": EVIL},
        ),
        # a sibling port of the same host is same-site, not same-origin
        ("/api/v1/api-keys", '{"name": "pwned"}', {**text_plain, "origin": "http://127.0.0.1:1"}),
        # a modern browser says so in Sec-Fetch-Site, even where it leaves Origin out
        (
            "/api/v1/api-keys",
            '{"name": "x"}',
            {"content-type": "text/plain", "sec-fetch-site": "cross-site"},
        ),
        (
            "/api/v1/api-keys",
            '{"name": "x"}',
            {"content-type": "text/plain", "sec-fetch-site": "same-site"},
        ),
        ("/api/v1/api-keys", '{"name": "x"}', {"content-type": "text/plain", "origin": "null"}),
    ]
    for path, content, headers in attacks:
        refused(browser.post(path, content=content, headers=headers))
    files = {"file": ("items.jsonl", b'{"a": 1}\n{"a": 2}\n', "application/x-ndjson")}
    refused(browser.post(f"/api/v1/flows/{fid}/batches", files=files, headers={"origin": EVIL}))
    refused(browser.delete(f"/api/v1/flows/{fid}", headers={"origin": EVIL}))
    # login CSRF: a foreign page signing the browser into the attacker's account
    body = {"email": "attacker@example.com", "password": "attacker-password"}
    refused(
        httpx.post(f"{running_stack.base_url}/api/auth/login", json=body, headers={"origin": EVIL})
    )

    assert name not in [s["name"] for s in bearer.http.get("/api/v1/secrets").json()]
    assert "pwned" not in [k["name"] for k in bearer.http.get("/api/v1/api-keys").json()]
    assert bearer.http.get(f"/api/v1/flows/{fid}/shares").json() == []
    assert bearer.http.get(f"/api/v1/runs?flow_id={fid}").json()["items"] == []
    assert bearer.http.get(f"/api/v1/flows/{fid}").status_code == 200


def test_the_designer_programs_and_non_browsers_still_work(
    victim: tuple[Api, httpx.Client], running_stack: Stack
) -> None:
    bearer, browser = victim
    own = running_stack.base_url
    json_ct = {"content-type": "application/json"}
    # the designer: same origin, JSON, credentials included
    for headers in ({"origin": own}, {"origin": own, "sec-fetch-site": "same-origin"}, {}):
        r = browser.post("/api/v1/api-keys", json={"name": "ui"}, headers=headers)
        assert r.status_code == 201, (headers, r.text)
    # a program with a bearer token is not subject to the Origin check
    r = bearer.http.post("/api/v1/api-keys", json={"name": "prog"}, headers={"origin": EVIL})
    assert r.status_code == 201, r.text
    # ... but a JSON route still wants JSON, from anyone
    for client in (browser, bearer.http):
        r = client.post(
            "/api/v1/api-keys", content=b'{"name": "x"}', headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415, r.text
        assert r.json()["errors"][0]["path"] == "header.Content-Type"
    r = browser.post("/api/v1/api-keys", content=b'{"name": "x"}', headers=json_ct)
    assert r.status_code == 201
    # safe methods are not checked (the page could read nothing anyway)
    assert browser.get("/api/auth/me", headers={"origin": EVIL}).status_code == 200


def test_cookie_is_secure_and_host_prefixed_behind_a_trusted_tls_proxy(
    running_stack: Stack, user_credentials: tuple[str, str]
) -> None:
    plain = login(running_stack.base_url, *user_credentials)
    cookie = plain.headers["set-cookie"]
    assert cookie.startswith("fs_session=") and "secure" not in cookie.lower()
    # the test client is on loopback, which FORWARDED_ALLOW_IPS trusts by default
    tls = login(running_stack.base_url, *user_credentials, **{"x-forwarded-proto": "https"})
    cookie = tls.headers["set-cookie"]
    assert cookie.startswith("__Host-fs_session="), cookie
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attrs and "path=/" in attrs and "httponly" in attrs
    assert not [a for a in attrs if a.startswith("domain")]
    token = tls.cookies["__Host-fs_session"]
    r = httpx.get(f"{running_stack.base_url}/api/auth/me", cookies={"__Host-fs_session": token})
    assert r.status_code == 200, "the __Host- name is accepted on read"
    out = httpx.post(
        f"{running_stack.base_url}/api/auth/logout",
        cookies={"__Host-fs_session": token},
        headers={"origin": running_stack.base_url},
    )
    assert out.status_code == 204
    assert (
        httpx.get(
            f"{running_stack.base_url}/api/auth/me", cookies={"__Host-fs_session": token}
        ).status_code
        == 401
    )


def test_forwarded_proto_from_an_untrusted_peer_is_ignored(
    stack: Stack, user_credentials: tuple[str, str]
) -> None:
    stack.start_api(extra_env={"FORWARDED_ALLOW_IPS": "192.0.2.1"})
    r = login(stack.base_url, *user_credentials, **{"x-forwarded-proto": "https"})
    assert r.headers["set-cookie"].startswith("fs_session="), r.headers["set-cookie"]
    assert "secure" not in r.headers["set-cookie"].lower()


def test_cookie_secure_setting_forces_it(stack: Stack, user_credentials: tuple[str, str]) -> None:
    stack.start_api(extra_env={"COOKIE_SECURE": "true"})
    r = login(stack.base_url, *user_credentials)
    assert r.headers["set-cookie"].startswith("__Host-fs_session="), r.headers["set-cookie"]


def test_trusted_origins_may_send_cookie_requests(
    stack: Stack, user_credentials: tuple[str, str]
) -> None:
    stack.start_api(extra_env={"TRUSTED_ORIGINS": "https://studio.example.com"})
    token = login(stack.base_url, *user_credentials).cookies["fs_session"]
    headers: dict[str, Any] = {
        "origin": "https://studio.example.com",
        "sec-fetch-site": "cross-site",
    }
    r = httpx.post(
        f"{stack.base_url}/api/v1/api-keys",
        json={"name": "trusted"},
        headers=headers,
        cookies={"fs_session": token},
    )
    assert r.status_code == 201, r.text
    headers["origin"] = EVIL
    r = httpx.post(
        f"{stack.base_url}/api/v1/api-keys",
        json={"name": "evil"},
        headers=headers,
        cookies={"fs_session": token},
    )
    refused(r)
