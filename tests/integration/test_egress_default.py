"""The shipped default (HTTP_ALLOWED_HOSTS empty) refuses loopback for http_request, end to end.

A private stack (own database and queue) whose processes run with HTTP_ALLOWED_HOSTS unset: an
http_request to a live server on 127.0.0.1, by address, by `localhost` and by a decimal spelling of
127.0.0.1, fails at once (no retry) with a refusal, and the server never sees a request.
"""

from __future__ import annotations

from typing import Any

from tests.support.client import Api, linear_flow
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack
from tests.support.tiny_http import TinyServer

DEFAULT = {"HTTP_ALLOWED_HOSTS": ""}


def test_default_settings_refuse_loopback_for_http_request(
    stack: Stack, credentials: tuple[str, str]
) -> None:
    stack.start_api(extra_env=DEFAULT)
    stack.start_orchestrator(extra_env=DEFAULT)
    stack.start_worker(concurrency=2, extra_env=DEFAULT)
    api = Api(stack.base_url, *credentials)
    server = TinyServer("127.0.0.1")
    retry = {"n": {"retry": {"max_attempts": 3, "initial_interval": 0.1}}}
    try:
        for host in ("127.0.0.1", "localhost", "2130706433"):
            params: dict[str, Any] = {"url": server.url("/", host=host)}
            flow = api.create_flow(linear_flow(("n", "http_request", params), retry=retry))
            run = api.wait_run(api.start_run(flow["id"]), timeout=60)
            assert run["status"] == "failed" and "refused" in run["error"]["message"], host
            assert api.steps(run)["n"]["attempt"] == 1
        assert server.hits == 0
    finally:
        server.close()
