"""Users for code-node tests: an admin, and editors the admin granted `nodes:code` over the real API.

`admin_api(base_url, database_url)` creates an admin and logs in; `granted_api(base_url,
database_url, admin)` creates an editor, grants it `nodes:code` through
`PUT /api/v1/users/{id}/permissions/nodes:code` and returns `(api, user_id)`.
"""

from __future__ import annotations

from tests.conftest import make_user
from tests.support.client import Api

CODE_PERMISSION = "nodes:code"


def admin_api(base_url: str, database_url: str) -> Api:
    return Api(base_url, *make_user(database_url, "admin"))


def user_id(api: Api) -> str:
    r = api.http.get("/api/auth/me")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def set_permission(admin: Api, uid: str, granted: bool) -> dict:
    path = f"/api/v1/users/{uid}/permissions/{CODE_PERMISSION}"
    r = admin.http.put(path) if granted else admin.http.delete(path)
    assert r.status_code == 200, r.text
    return r.json()


def granted_api(base_url: str, database_url: str, admin: Api) -> tuple[Api, str]:
    api = Api(base_url, *make_user(database_url))
    uid = user_id(api)
    assert CODE_PERMISSION in set_permission(admin, uid, True)["permissions"]
    return api, uid
