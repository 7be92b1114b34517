"""CODE_NODE over real processes with their own database (`support/private_stack.py`).

With CODE_NODE=off, or where bubblewrap is missing (CODE_SANDBOX_BWRAP pointing nowhere), the API
refuses to save a code node (422, node id and reason), the catalogue says why, and a worker refuses
to run a code node saved before (non-retryable); CODE_NODE=trusted
runs it in the old unsandboxed child (an administrator's unsafe opt-in). A worker whose env file is
group/world readable warns at start.
"""

from __future__ import annotations

from typing import Any

from tests.integration.test_code_policy import CODE_FLOW, assert_refused
from tests.support.client import Api
from tests.support.code_users import admin_api
from tests.support.private_stack import (  # noqa: F401 -- fixtures: base_env, db, credentials
    private_base_env,
    private_credentials,
    private_db,
    private_db_url,
)
from tests.support.stack import Stack

NO_BWRAP = {"CODE_NODE": "sandbox", "CODE_SANDBOX_BWRAP": "/nonexistent/bwrap"}


def refused_run(admin: Api, flow_id: str, reason: str) -> None:
    run = admin.wait_run(admin.start_run(flow_id), timeout=60)
    assert run["status"] == "failed" and reason in run["error"]["message"], run
    assert admin.steps(run)["py"]["attempt"] == 1  # not retried


def refused_save(admin: Api, reason: str) -> None:
    body = {"name": "code", "definition": CODE_FLOW}
    assert_refused(admin.http.post("/api/v1/flows", json=body), 422, reason)
    code = {n["type"]: n for n in admin.http.get("/api/v1/nodes").json()}["code"]
    assert code["available"] is False and reason in code["unavailable_reason"], code


def test_code_node_off_or_without_sandbox_is_refused_and_trusted_runs_unsandboxed(
    stack: Stack, private_db_url: str, db: Any  # noqa: F811
) -> None:
    env_file = stack.tmp / "world-readable.env"
    env_file.write_text("# SECRET_KEY would be here\n")
    env_file.chmod(0o644)
    api = stack.start_api()
    stack.start_orchestrator()
    worker = stack.start_worker(
        extra_env={"CODE_NODE": "off", "FLOWSTUDIO_ENV_FILE": str(env_file)}
    )
    admin = admin_api(stack.base_url, private_db_url)
    flow = admin.create_flow(CODE_FLOW)  # this API still runs the default (sandbox)
    refused_run(admin, flow["id"], "CODE_NODE=off")
    assert "readable by group/others" in worker.log_tail(200)  # warned at start
    worker.restart(NO_BWRAP)  # no bubblewrap where this worker runs
    refused_run(admin, flow["id"], "bubblewrap (/nonexistent/bwrap) is not installed")
    api.restart({"CODE_NODE": "off"})
    stack.wait_api(api)
    refused_save(admin, "CODE_NODE=off")
    api.restart(NO_BWRAP)
    stack.wait_api(api)
    refused_save(admin, "is not installed")
    refused_save(admin, "CODE_NODE=trusted, which is unsafe")
    worker.restart({"CODE_NODE": "trusted", "CODE_SANDBOX_BWRAP": ""})
    run = admin.wait_run(admin.start_run(flow["id"]), timeout=60)
    assert run["status"] == "succeeded" and run["outputs"]["result"] == 42, run
