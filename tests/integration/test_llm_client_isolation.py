"""Attack: one team's LLM calls must not carry state another team's calls left in the worker.

A worker shares one OpenAI client (and its httpx client) per (base_url, API key, timeout) between
all the steps it runs, whoever owns them: two teams calling the same OpenAI-compatible gateway
without a key (a local vLLM, an internal gateway) share it. An httpx client keeps the cookies its
responses set and sends them with every later request: a session cookie the gateway gave Alice's
call would be sent with Bob's, which the gateway would then treat as Alice's session. The shared
client keeps no cookies (`egress.without_cookies`): the fake provider sets one on every answer,
and no call, Alice's own included, may send one back.
"""

from __future__ import annotations

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack


def test_a_cookie_set_on_one_teams_call_is_never_sent_with_a_later_call(
    running_stack: Stack, database_url: str, fake: FakeOpenAI
) -> None:
    base_url = fake.base_url(set_cookie=1)
    params = {"model": "m", "base_url": base_url, "prompt": "{{ inputs.q }}"}
    for who in ("alice", "bob"):
        team = Api(running_stack.base_url, *make_user(database_url, "editor"))
        flow = team.create_flow(linear_flow(("n", "llm_chat", params)))
        for i in range(4):  # spread over both workers of the stack
            run = team.wait_run(team.start_run(flow["id"], {"q": f"{who}-session-{i}"}))
            assert run["status"] == "succeeded", run
    calls = [r for r in fake.requests if "-session-" in str(r["body"].get("messages"))]
    assert len(calls) == 8
    sent = [r["headers"]["cookie"] for r in calls if "cookie" in r["headers"]]
    assert sent == [], f"cookies sent back to the provider: {sent}"
