"""Flow routes over real HTTP: restore a version, duplicate, export/import, bad input, and isolation.

Restoring makes a new version equal to the old one (history is never rewritten, runs use it);
export's `{"name","description","definition"}` imports back as a new flow; bad bodies answer 422 with
field paths; another user's flow is 404 on every route, never 500.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import make_user
from tests.support.client import Api
from tests.support.flows import template_flow
from tests.support.stack import Stack

PROBLEM = "application/problem+json"


@pytest.fixture
def other(running_stack: Stack, database_url: str) -> Api:
    return Api(running_stack.base_url, *make_user(database_url))


def assert_problem(r: httpx.Response, status: int, path: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    if path is not None:
        assert path in [e["path"] for e in body.get("errors", [])], body
    return body


def test_restore_makes_a_new_version_equal_to_the_old_one(
    api: Api, db: psycopg.Connection[Any]
) -> None:
    v1, v2 = template_flow("one"), template_flow("two")
    flow = api.create_flow(v1, name="restorable")
    fid = flow["id"]
    assert api.http.put(f"/api/v1/flows/{fid}", json={"definition": v2}).json()["version"] == 2

    r = api.http.post(f"/api/v1/flows/{fid}/versions/1/restore")
    assert r.status_code == 200, r.text
    restored = r.json()
    assert restored["version"] == 3 and restored["restored_from"] == 1
    assert restored["definition"] == api.http.get(f"/api/v1/flows/{fid}").json()["definition"]
    assert [v["version"] for v in api.http.get(f"/api/v1/flows/{fid}/versions").json()] == [3, 2, 1]
    rows = dict(
        db.execute(
            "SELECT version, definition FROM flow_versions WHERE flow_id = %s", (fid,)
        ).fetchall()
    )
    assert rows[3] == rows[1] != rows[2]

    run = api.wait_run(api.start_run(fid))
    assert run["status"] == "succeeded" and run["flow_version"] == 3
    assert run["outputs"] == {"text": "one"}

    assert_problem(api.http.post(f"/api/v1/flows/{fid}/versions/9/restore"), 404)
    assert_problem(api.http.post(f"/api/v1/flows/{fid}/versions/0/restore"), 404)
    assert_problem(api.http.post(f"/api/v1/flows/{uuid.uuid4()}/versions/1/restore"), 404)


def test_duplicate_creates_an_independent_copy(api: Api) -> None:
    source = api.create_flow(template_flow("dup"), name="original")
    r = api.http.post(f"/api/v1/flows/{source['id']}/duplicate")
    assert r.status_code == 201, r.text
    copy = r.json()
    assert copy["id"] != source["id"] and copy["name"] == "original (copy)"
    assert copy["version"] == 1 and copy["definition"] == source["definition"]
    assert copy["duplicated_from"] == source["id"]

    named = api.http.post(f"/api/v1/flows/{source['id']}/duplicate", json={"name": "renamed"})
    assert named.status_code == 201 and named.json()["name"] == "renamed"

    api.http.put(f"/api/v1/flows/{copy['id']}", json={"definition": template_flow("changed")})
    assert api.http.get(f"/api/v1/flows/{source['id']}").json()["version"] == 1

    dup = f"/api/v1/flows/{source['id']}/duplicate"
    assert_problem(api.http.post(dup, json={"name": 5}), 422, "body.name")
    assert_problem(api.http.post(dup, json={"name": ""}), 422, "body.name")
    assert_problem(api.http.post(dup, json={"name": "x" * 201}), 422, "body.name")
    bad = api.http.post(dup, content=b"{oops", headers={"content-type": "application/json"})
    assert_problem(bad, 400)
    assert_problem(api.http.post(f"/api/v1/flows/{uuid.uuid4()}/duplicate"), 404)


def test_export_then_import_round_trips(api: Api) -> None:
    defn = template_flow("exported {{ inputs.x }}")
    source = api.create_flow(defn, name="to export")
    api.http.put(f"/api/v1/flows/{source['id']}", json={"description": "described"})
    r = api.http.get(f"/api/v1/flows/{source['id']}/export")
    assert r.status_code == 200
    exported = r.json()
    assert exported == {"name": "to export", "description": "described", "definition": defn}

    imported = api.http.post("/api/v1/flows/import", json=exported)
    assert imported.status_code == 201, imported.text
    flow = imported.json()
    assert flow["id"] != source["id"] and flow["version"] == 1
    assert (flow["name"], flow["description"], flow["definition"]) == (
        "to export",
        "described",
        defn,
    )
    run = api.wait_run(api.start_run(flow["id"], {"x": 1}))
    assert run["outputs"] == {"text": "exported 1"}


def test_export_of_a_given_version(api: Api) -> None:
    v1 = template_flow("first")
    flow = api.create_flow(v1)
    api.http.put(f"/api/v1/flows/{flow['id']}", json={"definition": template_flow("second")})
    old = api.http.get(f"/api/v1/flows/{flow['id']}/export", params={"version": 1})
    assert old.status_code == 200 and old.json()["definition"] == v1
    assert_problem(api.http.get(f"/api/v1/flows/{flow['id']}/export", params={"version": 7}), 404)
    bad = api.http.get(f"/api/v1/flows/{flow['id']}/export", params={"version": "x"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)


def test_import_is_validated_like_create(api: Api) -> None:
    url = "/api/v1/flows/import"
    assert_problem(api.http.post(url, json={"definition": template_flow("x")}), 422, "body.name")
    assert_problem(api.http.post(url, json={"name": "n"}), 422, "body.definition")
    assert_problem(api.http.post(url, json={"name": "n", "definition": []}), 422, "body.definition")
    assert_problem(
        api.http.post(url, json={"name": " ", "definition": template_flow("x")}), 422, "body.name"
    )
    unknown = {
        "nodes": [{"id": "a", "type": "no_such_type", "data": {"params": {}}}],
        "edges": [],
    }
    body = assert_problem(
        api.http.post(url, json={"name": "n", "definition": unknown}),
        422,
        "definition.nodes[0].type",
    )
    assert body["errors"][0]["node_id"] == "a"
    dangling = template_flow("x")
    dangling["edges"].append({"id": "e9", "source": "t", "target": "ghost"})
    assert_problem(api.http.post(url, json={"name": "n", "definition": dangling}), 422)
    assert_problem(
        api.http.post(url, content=b"not json", headers={"content-type": "application/json"}), 400
    )
    assert_problem(httpx.post(f"{api.http.base_url}{url}", json={}), 401)


def test_viewer_cannot_import_or_duplicate(running_stack: Stack, database_url: str) -> None:
    viewer = Api(running_stack.base_url, *make_user(database_url, "viewer"))
    body = {"name": "n", "definition": template_flow("x")}
    assert_problem(viewer.http.post("/api/v1/flows/import", json=body), 403)


def test_another_users_flow_is_404_on_every_route(api: Api, other: Api) -> None:
    flow = api.create_flow(template_flow("private"), name="private flow")
    fid = flow["id"]
    attempts = [
        other.http.get(f"/api/v1/flows/{fid}"),
        other.http.put(f"/api/v1/flows/{fid}", json={"name": "stolen"}),
        other.http.delete(f"/api/v1/flows/{fid}"),
        other.http.get(f"/api/v1/flows/{fid}/versions"),
        other.http.get(f"/api/v1/flows/{fid}/export"),
        other.http.post(f"/api/v1/flows/{fid}/duplicate"),
        other.http.post(f"/api/v1/flows/{fid}/versions/1/restore"),
        other.http.post(f"/api/v1/flows/{fid}/runs", json={"inputs": {}}),
    ]
    for r in attempts:
        assert_problem(r, 404)
    assert fid not in [f["id"] for f in other.http.get("/api/v1/flows").json()]
    unchanged = api.http.get(f"/api/v1/flows/{fid}").json()
    assert unchanged["name"] == "private flow" and unchanged["version"] == 1

    # what the other user imports or duplicates from an export belongs to them alone
    exported = api.http.get(f"/api/v1/flows/{fid}/export").json()
    theirs = other.http.post("/api/v1/flows/import", json=exported).json()
    assert theirs["owner_id"] != flow["owner_id"]
    assert_problem(api.http.get(f"/api/v1/flows/{theirs['id']}"), 404)


def test_malformed_ids_are_404_not_500(api: Api) -> None:
    for path in ("/api/v1/flows/not-a-uuid/export", "/api/v1/flows/not-a-uuid/duplicate"):
        r = api.http.request("GET" if path.endswith("export") else "POST", path)
        assert_problem(r, 404)
    flow = api.create_flow(template_flow("x"))
    assert_problem(api.http.post(f"/api/v1/flows/{flow['id']}/versions/abc/restore"), 404)


def test_stale_save_is_409_with_the_newer_version_and_writes_nothing(api: Api) -> None:
    fid = api.create_flow(template_flow("base"), name="concurrent")["id"]
    mine, theirs = template_flow("mine"), template_flow("theirs")
    r = api.http.put(f"/api/v1/flows/{fid}", json={"definition": theirs, "base_version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text

    stale = api.http.put(
        f"/api/v1/flows/{fid}", json={"definition": mine, "base_version": 1, "name": "renamed"}
    )
    body = assert_problem(stale, 409, "body.base_version")
    assert body["current_version"] == 2
    now = api.http.get(f"/api/v1/flows/{fid}").json()
    assert now["version"] == 2 and now["definition"] == theirs and now["name"] == "concurrent"

    by_header = api.http.put(
        f"/api/v1/flows/{fid}", json={"definition": mine}, headers={"If-Match": '"1"'}
    )
    assert assert_problem(by_header, 409)["current_version"] == 2
    ok = api.http.put(
        f"/api/v1/flows/{fid}", json={"definition": mine}, headers={"If-Match": '"2"'}
    )
    assert ok.status_code == 200 and ok.json()["version"] == 3, ok.text
    assert_problem(
        api.http.put(f"/api/v1/flows/{fid}", json={"name": "x"}, headers={"If-Match": "v3"}),
        422,
        "header.If-Match",
    )
    # without a base version the contract's last-write-wins PUT still works
    legacy = api.http.put(f"/api/v1/flows/{fid}", json={"definition": theirs})
    assert legacy.status_code == 200 and legacy.json()["version"] == 4
    assert_problem(
        api.http.put(f"/api/v1/flows/{uuid.uuid4()}", json={"name": "x", "base_version": 1}), 404
    )
