"""Who may use the code node, and where: the `nodes:code` permission and CODE_NODE, over the real API.

An editor without `nodes:code` cannot save a code node by any route (create, update, import,
duplicate, restore): 403 naming the node. An admin can, and grants/revokes the permission through
`/api/v1/users/{id}/permissions/nodes:code`; a flow version saved by someone who later lost it fails
at run time. CODE_NODE=off / trusted: test_code_node_modes.py.
"""

from __future__ import annotations

import httpx

from tests.support.client import Api, linear_flow
from tests.support.code_users import admin_api, granted_api, set_permission, user_id
from tests.support.stack import Stack

CODE_FLOW = linear_flow(("py", "code", {"code": "result = 6 * 7"}))
PLAIN_FLOW = linear_flow(("t", "template", {"template": "hi"}))


def assert_refused(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["errors"][0]["node_id"] == "py", body
    assert body["errors"][0]["path"].startswith("definition.nodes[1]"), body
    assert reason in body["detail"], body


def test_editor_without_the_permission_cannot_save_a_code_node_by_any_route(
    running_stack: Stack, database_url: str, user_credentials: tuple[str, str]
) -> None:
    editor = Api(running_stack.base_url, *user_credentials)
    admin = admin_api(running_stack.base_url, database_url)
    body = {"name": "with code", "definition": CODE_FLOW}
    assert_refused(editor.http.post("/api/v1/flows", json=body), 403, "nodes:code")
    assert_refused(editor.http.post("/api/v1/flows/import", json=body), 403, "nodes:code")
    plain = editor.create_flow(PLAIN_FLOW)
    put = editor.http.put(f"/api/v1/flows/{plain['id']}", json={"definition": CODE_FLOW})
    assert_refused(put, 403, "nodes:code")
    # the admin can, for its own flows and (as admin) for the editor's
    assert admin.http.post("/api/v1/flows", json=body).status_code == 201
    put = admin.http.put(f"/api/v1/flows/{plain['id']}", json={"definition": CODE_FLOW})
    assert put.status_code == 200, put.text
    # the editor may not duplicate it nor restore the admin's code version after a plain one
    assert_refused(editor.http.post(f"/api/v1/flows/{plain['id']}/duplicate"), 403, "nodes:code")
    r = editor.http.put(f"/api/v1/flows/{plain['id']}", json={"definition": PLAIN_FLOW})
    assert r.status_code == 200, r.text
    restore = editor.http.post(f"/api/v1/flows/{plain['id']}/versions/2/restore")
    assert_refused(restore, 403, "nodes:code")
    catalogue = {n["type"]: n for n in editor.http.get("/api/v1/nodes").json()}
    assert (
        catalogue["code"]["available"] is True and catalogue["code"]["unavailable_reason"] is None
    )
    assert catalogue["template"]["available"] is True


def test_only_admins_grant_and_only_known_permissions(
    running_stack: Stack, database_url: str, user_credentials: tuple[str, str]
) -> None:
    editor = Api(running_stack.base_url, *user_credentials)
    admin = admin_api(running_stack.base_url, database_url)
    uid = user_id(editor)
    assert editor.http.put(f"/api/v1/users/{uid}/permissions/nodes:code").status_code == 403
    assert editor.http.get("/api/v1/users").status_code == 403
    for bad in ("users:admin", "root:everything"):
        r = admin.http.put(f"/api/v1/users/{uid}/permissions/{bad}")
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == "path.permission", r.text
    missing = "00000000-0000-0000-0000-000000000000"
    assert admin.http.put(f"/api/v1/users/{missing}/permissions/nodes:code").status_code == 404
    me = editor.http.get("/api/auth/me").json()
    assert "nodes:code" not in me["permissions"]


def test_a_grant_allows_saving_and_a_revoke_stops_runs_of_what_was_saved(
    running_stack: Stack, database_url: str
) -> None:
    admin = admin_api(running_stack.base_url, database_url)
    editor, uid = granted_api(running_stack.base_url, database_url, admin)
    assert "nodes:code" in editor.http.get("/api/auth/me").json()["permissions"]
    flow = editor.create_flow(CODE_FLOW)
    run = editor.wait_run(editor.start_run(flow["id"]), timeout=60)
    assert run["status"] == "succeeded" and run["outputs"]["result"] == 42, run
    listed = {u["id"]: u for u in admin.http.get("/api/v1/users").json()}
    assert listed[uid]["granted_permissions"] == ["nodes:code"]
    assert "nodes:code" not in set_permission(admin, uid, False)["permissions"]
    refused = editor.wait_run(editor.start_run(flow["id"]), timeout=60)
    assert refused["status"] == "failed", refused
    assert "nodes:code" in refused["error"]["message"], refused["error"]
    assert editor.steps(refused)["py"]["attempt"] == 1  # not retried
    put = editor.http.put(f"/api/v1/flows/{flow['id']}", json={"definition": CODE_FLOW})
    assert_refused(put, 403, "nodes:code")


def test_tweaking_a_code_node_needs_the_permission(
    running_stack: Stack, database_url: str, user_credentials: tuple[str, str]
) -> None:
    """An owner without nodes:code must not swap the code of a node an admin put in their flow."""
    editor = Api(running_stack.base_url, *user_credentials)
    admin = admin_api(running_stack.base_url, database_url)
    flow = editor.create_flow(PLAIN_FLOW)
    put = admin.http.put(f"/api/v1/flows/{flow['id']}", json={"definition": CODE_FLOW})
    assert put.status_code == 200, put.text
    tweak = {"input_value": "", "tweaks": {"py": {"code": "result = 'tweaked'"}}}
    r = editor.http.post(f"/api/v1/run/{flow['id']}?timeout=30", json=tweak)
    assert r.status_code == 403, r.text
    assert r.json()["errors"][0] == {
        "path": "body.tweaks.py",
        "node_id": "py",
        "reason": "tweaking a code node needs the nodes:code permission",
    }
    plain = editor.http.post(f"/api/v1/run/{flow['id']}?timeout=60", json={"input_value": ""})
    assert plain.status_code == 200 and plain.json()["outputs"]["result"] == 42, plain.text
    granted, _ = granted_api(running_stack.base_url, database_url, admin)
    own = granted.create_flow(CODE_FLOW)
    r = granted.http.post(f"/api/v1/run/{own['id']}?timeout=60", json=tweak)
    assert r.status_code == 200 and r.json()["outputs"]["result"] == "tweaked", r.text
