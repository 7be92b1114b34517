"""A thin HTTP client for tests: log in, create flows, start runs and wait for them, over real HTTP.

(`linear_flow` is re-exported from tests/support/flows.py, the one flow builder, for the tests that
import it from here.)
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support.flows import linear_flow

__all__ = ["Api", "linear_flow"]


class Api:
    def __init__(self, base_url: str, email: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        r = self.http.post("/api/auth/login", json={"email": email, "password": password})
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.http.headers["authorization"] = f"Bearer {self.token}"

    def create_flow(self, definition: dict[str, Any], name: str = "test flow") -> dict[str, Any]:
        r = self.http.post("/api/v1/flows", json={"name": name, "definition": definition})
        assert r.status_code == 201, r.text
        return r.json()

    def start_run(
        self, flow_id: str, inputs: dict[str, Any] | None = None, key: str | None = None
    ) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        r = self.http.post(
            f"/api/v1/flows/{flow_id}/runs", json={"inputs": inputs or {}}, headers=headers
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/runs/{run_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_run(
        self,
        run_id: str,
        timeout: float = 30,
        statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                run = self.run(run_id)
                if run["status"] in statuses:
                    return run
            except httpx.HTTPError:
                pass  # the API may be restarting in a crash test
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {run_id} not in {statuses} after {timeout}s: "
                    f"{run['status']} {[(s['node_id'], s['status']) for s in run['steps']]}"
                )
            time.sleep(0.1)

    def steps(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["node_id"]: s for s in run["steps"]}
