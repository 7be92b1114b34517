"""Draft vs published versions, endpoint names and flow sharing, over real HTTP with real workers.

Callers that name no version run the published one (the latest while never published); endpoint
names are per-owner aliases accepted by `/api/v1/run/{name}`; a flow shared for 'run' can be read and
run by that user (the runs are theirs alone), 'view' only read; nobody but the owner (or an admin)
changes it (403 for shared users, 404 for everyone else, never 500).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import make_user
from tests.support.client import Api, linear_flow
from tests.support.flows import template_flow
from tests.support.stack import Stack

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, path: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    if path is not None:
        assert path in [e["path"] for e in body.get("errors", [])], body
    return body


def run_text(api: Api, flow_id: str, **body: Any) -> str:
    r = api.http.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {}, **body})
    assert r.status_code == 202, r.text
    run = api.wait_run(r.json()["id"])
    assert run["status"] == "succeeded", run
    return str(run["outputs"]["text"])


def user_api(stack: Stack, database_url: str, role: str = "editor") -> Api:
    return Api(stack.base_url, *make_user(database_url, role))


@pytest.fixture
def owner(running_stack: Stack, database_url: str) -> Api:
    return user_api(running_stack, database_url)


def me(api: Api) -> dict[str, Any]:
    return dict(api.http.get("/api/auth/me").json())


def test_callers_run_the_published_version_unless_they_name_another(owner: Api) -> None:
    flow = owner.create_flow(template_flow("one"))
    fid = flow["id"]
    assert flow["published_version"] is None
    r = owner.http.put(f"/api/v1/flows/{fid}", json={"definition": template_flow("two")})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert run_text(owner, fid) == "two", "a never-published flow runs its latest version"

    r = owner.http.post(f"/api/v1/flows/{fid}/publish", json={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json()["published_version"] == 1 and r.json()["version"] == 2
    assert owner.http.get(f"/api/v1/flows/{fid}").json()["published_version"] == 1
    assert run_text(owner, fid) == "one"
    assert run_text(owner, fid, version=2) == "two"
    sync = owner.http.post(f"/api/v1/run/{fid}", json={"input_value": "x"})
    assert sync.status_code == 200 and sync.json()["outputs"]["text"] == "one"

    # saving the draft again does not move what is published
    owner.http.put(f"/api/v1/flows/{fid}", json={"definition": template_flow("three")})
    assert owner.http.get(f"/api/v1/flows/{fid}").json()["published_version"] == 1
    assert run_text(owner, fid) == "one"

    r = owner.http.post(f"/api/v1/flows/{fid}/publish")  # no body: the current version
    assert r.status_code == 200 and r.json()["published_version"] == 3
    assert run_text(owner, fid) == "three"

    r = owner.http.post(f"/api/v1/flows/{fid}/unpublish")
    assert r.status_code == 200 and r.json()["published_version"] is None
    owner.http.put(f"/api/v1/flows/{fid}", json={"definition": template_flow("four")})
    assert run_text(owner, fid) == "four"
    listed = {f["id"]: f for f in owner.http.get("/api/v1/flows").json()}
    assert listed[fid]["published_version"] is None and listed[fid]["access"] == "owner"


def test_publish_bad_input_is_4xx_with_field_path_never_500(owner: Api) -> None:
    fid = owner.create_flow(template_flow("x"))["id"]
    for version in (2, 0, -1):
        r = owner.http.post(f"/api/v1/flows/{fid}/publish", json={"version": version})
        assert_problem(r, 422, "body.version")
    assert_problem(owner.http.post(f"/api/v1/flows/{fid}/publish", json={"version": "1"}), 422)
    r = owner.http.post(
        f"/api/v1/flows/{fid}/publish",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert_problem(r, 400)
    assert_problem(owner.http.post(f"/api/v1/flows/{uuid.uuid4()}/publish"), 404)
    assert_problem(owner.http.post("/api/v1/flows/not-a-uuid/publish"), 404)
    assert owner.http.get(f"/api/v1/flows/{fid}").json()["published_version"] is None


def test_endpoint_names_are_validated_and_unique_per_owner(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    name = "ep-" + uuid.uuid4().hex[:8]
    bad_names = ["Has Caps", "-leading", "a" * 64, "sp ace", str(uuid.uuid4()), uuid.uuid4().hex]
    for bad in bad_names:
        body = {"name": "n", "definition": template_flow("x"), "endpoint_name": bad}
        assert_problem(owner.http.post("/api/v1/flows", json=body), 422, "body.endpoint_name")
    assert_problem(
        owner.http.post(
            "/api/v1/flows",
            json={"name": "n", "definition": template_flow("x"), "endpoint_name": 5},
        ),
        422,
        "body.endpoint_name",
    )
    body = {"name": "n", "definition": template_flow("x"), "endpoint_name": name}
    first = owner.http.post("/api/v1/flows", json=body)
    assert first.status_code == 201 and first.json()["endpoint_name"] == name
    assert_problem(owner.http.post("/api/v1/flows", json=body), 409, "body.endpoint_name")
    second = owner.create_flow(template_flow("y"))
    r = owner.http.put(f"/api/v1/flows/{second['id']}", json={"endpoint_name": name})
    assert_problem(r, 409, "body.endpoint_name")
    r = owner.http.put(f"/api/v1/flows/{second['id']}", json={"endpoint_name": "Bad!"})
    assert_problem(r, 422, "body.endpoint_name")

    other = user_api(running_stack, database_url)
    assert other.http.post("/api/v1/flows", json=body).status_code == 201, "names are per owner"

    # PUT without the field keeps it, null clears it, a deleted flow frees it
    fid = first.json()["id"]
    r = owner.http.put(f"/api/v1/flows/{fid}", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["endpoint_name"] == name
    r = owner.http.put(f"/api/v1/flows/{fid}", json={"endpoint_name": None})
    assert r.status_code == 200 and r.json()["endpoint_name"] is None
    r = owner.http.put(f"/api/v1/flows/{second['id']}", json={"endpoint_name": name})
    assert r.status_code == 200 and r.json()["endpoint_name"] == name
    assert owner.http.delete(f"/api/v1/flows/{second['id']}").status_code == 204
    r = owner.http.put(f"/api/v1/flows/{fid}", json={"endpoint_name": name})
    assert r.status_code == 200 and r.json()["endpoint_name"] == name


def test_sync_run_takes_the_callers_endpoint_name_or_a_uuid(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    name = "chat-" + uuid.uuid4().hex[:8]
    defn = linear_flow(("t", "template", {"template": "hi {{ inputs.input_value }}"}))
    r = owner.http.post(
        "/api/v1/flows", json={"name": "n", "definition": defn, "endpoint_name": name}
    )
    fid = r.json()["id"]
    for ref in (name, fid):
        r = owner.http.post(f"/api/v1/run/{ref}", json={"input_value": "ada"})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"] == {"text": "hi ada"}

    other = user_api(running_stack, database_url)
    for ref in (name, fid, "no-such-name", "Not_A_Name!", str(uuid.uuid4())):
        assert_problem(other.http.post(f"/api/v1/run/{ref}", json={"input_value": "x"}), 404)
    # the other user's flow with the same endpoint name is theirs, not the owner's
    other_defn = linear_flow(("t", "template", {"template": "other"}))
    body = {"name": "n", "definition": other_defn, "endpoint_name": name}
    assert other.http.post("/api/v1/flows", json=body).status_code == 201
    assert other.http.post(f"/api/v1/run/{name}", json={}).json()["outputs"]["text"] == "other"
    assert owner.http.post(f"/api/v1/run/{name}", json={}).json()["outputs"]["text"] == "hi None"


def test_runner_runs_a_shared_flow_and_sees_only_their_own_runs(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    runner = user_api(running_stack, database_url, "runner")
    fid = owner.create_flow(template_flow("v1"), name="shared")["id"]
    owner.http.put(f"/api/v1/flows/{fid}", json={"definition": template_flow("v2")})
    owner.http.post(f"/api/v1/flows/{fid}/publish", json={"version": 1})
    owner_run = owner.start_run(fid)
    assert_problem(runner.http.get(f"/api/v1/flows/{fid}"), 404)
    assert_problem(runner.http.post(f"/api/v1/flows/{fid}/runs", json={}), 404)

    r = owner.http.post(
        f"/api/v1/flows/{fid}/shares", json={"email": me(runner)["email"], "permission": "run"}
    )
    assert r.status_code == 202, r.text
    assert r.json()["permission"] == "run" and "user_id" not in r.json()

    got = runner.http.get(f"/api/v1/flows/{fid}")
    assert got.status_code == 200 and got.json()["access"] == "run"
    assert got.json()["published_version"] == 1
    listed = {f["id"]: f["access"] for f in runner.http.get("/api/v1/flows").json()}
    assert listed == {fid: "run"}

    run = runner.wait_run(runner.start_run(fid, key="runner-key"))
    assert run["status"] == "succeeded" and run["outputs"] == {"text": "v1"}
    assert run["owner_id"] == me(runner)["id"] and run["flow_version"] == 1
    assert runner.start_run(fid, key="runner-key") == run["id"], "Idempotency-Key holds"
    sync = runner.http.post(f"/api/v1/run/{fid}", json={"input_value": "x"})
    assert sync.status_code == 200 and sync.json()["outputs"] == {"text": "v1"}

    # runs are their starter's: each sees only their own, the other's are 404
    runner_ids = {r["id"] for r in runner.http.get("/api/v1/runs").json()["items"]}
    assert run["id"] in runner_ids and owner_run not in runner_ids
    assert_problem(runner.http.get(f"/api/v1/runs/{owner_run}"), 404)
    assert_problem(runner.http.post(f"/api/v1/runs/{owner_run}/cancel"), 404)
    assert_problem(owner.http.get(f"/api/v1/runs/{run['id']}"), 404)
    assert run["id"] not in {r["id"] for r in owner.http.get("/api/v1/runs").json()["items"]}

    # visible but not theirs to change: 403
    forbidden = [
        runner.http.put(f"/api/v1/flows/{fid}", json={"name": "stolen"}),
        runner.http.delete(f"/api/v1/flows/{fid}"),
        runner.http.post(f"/api/v1/flows/{fid}/publish", json={"version": 2}),
        runner.http.post(f"/api/v1/flows/{fid}/unpublish"),
        runner.http.get(f"/api/v1/flows/{fid}/shares"),
        runner.http.post(f"/api/v1/flows/{fid}/shares", json={"email": "x@example.com"}),
        runner.http.post(
            f"/api/v1/run/{fid}", json={"input_value": "x", "tweaks": {"t": {"template": "x"}}}
        ),
        runner.http.post("/api/v1/flows", json={"name": "n", "definition": template_flow("x")}),
    ]
    for r in forbidden:
        assert_problem(r, 403)
    flow = owner.http.get(f"/api/v1/flows/{fid}").json()
    assert (flow["name"], flow["published_version"], flow["version"]) == ("shared", 1, 2)

    # the runner leaves the flow; it is invisible again
    r = runner.http.delete(f"/api/v1/flows/{fid}/shares/{me(runner)['id']}")
    assert r.status_code == 204
    assert_problem(runner.http.get(f"/api/v1/flows/{fid}"), 404)
    assert_problem(runner.http.post(f"/api/v1/flows/{fid}/runs", json={}), 404)
    assert runner.run(run["id"])["id"] == run["id"], "their past runs stay theirs"


def test_view_shares_and_the_viewer_role_read_but_never_run(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    viewer = user_api(running_stack, database_url, "viewer")
    editor = user_api(running_stack, database_url, "editor")
    fid = owner.create_flow(template_flow("x"))["id"]
    owner.http.post(f"/api/v1/flows/{fid}/publish")  # shared users run only a published version
    owner_run = owner.start_run(fid)
    for who, permission in ((viewer, "run"), (editor, "view")):
        body = {"email": me(who)["email"].upper(), "permission": permission}
        assert owner.http.post(f"/api/v1/flows/{fid}/shares", json=body).status_code == 202
    for who, access in ((viewer, "run"), (editor, "view")):
        r = who.http.get(f"/api/v1/flows/{fid}")
        assert r.status_code == 200 and r.json()["access"] == access
        assert_problem(who.http.post(f"/api/v1/flows/{fid}/runs", json={}), 403)
        assert_problem(who.http.post(f"/api/v1/run/{fid}", json={"input_value": "x"}), 403)
        assert_problem(who.http.post(f"/api/v1/webhook/{fid}", json={}), 403)
        assert_problem(who.http.put(f"/api/v1/flows/{fid}", json={"name": "x"}), 403)
        assert_problem(who.http.get(f"/api/v1/runs/{owner_run}"), 404)
        assert who.http.get("/api/v1/runs").json()["items"] == []
    assert_problem(editor.http.get(f"/api/v1/flows/{fid}/versions"), 403)

    shares = owner.http.get(f"/api/v1/flows/{fid}/shares").json()
    assert {(s["email"], s["permission"]) for s in shares} == {
        (me(viewer)["email"], "run"),
        (me(editor)["email"], "view"),
    }
    # sharing again changes the permission; the editor may now run it
    body = {"email": me(editor)["email"], "permission": "run"}
    r = owner.http.post(f"/api/v1/flows/{fid}/shares", json=body)
    assert r.status_code == 202 and r.json()["permission"] == "run"
    assert editor.wait_run(editor.start_run(fid))["status"] == "succeeded"
    r = owner.http.delete(f"/api/v1/flows/{fid}/shares/{me(editor)['id']}")
    assert r.status_code == 204
    assert_problem(editor.http.get(f"/api/v1/flows/{fid}"), 404)
    assert_problem(owner.http.delete(f"/api/v1/flows/{fid}/shares/{me(editor)['id']}"), 404)


def test_share_bad_input_is_422_with_field_path(owner: Api) -> None:
    fid = owner.create_flow(template_flow("x"))["id"]
    url = f"/api/v1/flows/{fid}/shares"
    unknown = {"email": f"nobody-{uuid.uuid4().hex[:6]}@example.com", "permission": "run"}
    assert owner.http.post(url, json=unknown).status_code == 202  # same answer as a known email
    assert_problem(owner.http.post(url, json={"email": me(owner)["email"]}), 422, "body.email")
    assert_problem(owner.http.post(url, json={"email": "", "permission": "run"}), 422, "body.email")
    bad_permission = {"email": me(owner)["email"], "permission": "admin"}
    assert_problem(owner.http.post(url, json=bad_permission), 422, "body.permission")
    assert_problem(owner.http.post(url, json={"permission": "run"}), 422, "body.email")
    assert_problem(
        owner.http.post(url, content=b"[", headers={"content-type": "application/json"}), 400
    )
    assert_problem(owner.http.delete(f"{url}/not-a-uuid"), 404)
    assert_problem(owner.http.delete(f"{url}/{uuid.uuid4()}"), 404)
    assert owner.http.get(url).json() == []


def test_other_users_flows_stay_404_on_every_new_route(
    owner: Api, running_stack: Stack, database_url: str
) -> None:
    stranger = user_api(running_stack, database_url)
    runner = user_api(running_stack, database_url, "runner")
    name = "private-" + uuid.uuid4().hex[:6]
    body = {"name": "p", "definition": template_flow("p"), "endpoint_name": name}
    fid = owner.http.post("/api/v1/flows", json=body).json()["id"]
    share = {"email": me(runner)["email"], "permission": "run"}
    assert owner.http.post(f"/api/v1/flows/{fid}/shares", json=share).status_code == 202
    for who in (stranger, runner):  # a share never exposes the owner's endpoint names
        assert_problem(who.http.post(f"/api/v1/run/{name}", json={}), 404)
        assert_problem(who.http.post(f"/api/v1/webhook/{name}", json={}), 404)
    attempts = [
        stranger.http.get(f"/api/v1/flows/{fid}"),
        stranger.http.put(f"/api/v1/flows/{fid}", json={"endpoint_name": "mine"}),
        stranger.http.post(f"/api/v1/flows/{fid}/publish"),
        stranger.http.post(f"/api/v1/flows/{fid}/unpublish"),
        stranger.http.get(f"/api/v1/flows/{fid}/shares"),
        stranger.http.post(f"/api/v1/flows/{fid}/shares", json=share),
        stranger.http.delete(f"/api/v1/flows/{fid}/shares/{me(runner)['id']}"),
        stranger.http.post(f"/api/v1/flows/{fid}/runs", json={}),
        stranger.http.post(f"/api/v1/run/{fid}", json={}),
        stranger.http.post(f"/api/v1/webhook/{fid}", json={}),
    ]
    for r in attempts:
        assert_problem(r, 404)
    assert fid not in [f["id"] for f in stranger.http.get("/api/v1/flows").json()]
    assert {s["email"] for s in owner.http.get(f"/api/v1/flows/{fid}/shares").json()} == {
        me(runner)["email"]
    }
