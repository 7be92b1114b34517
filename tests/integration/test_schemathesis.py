"""Property-based fuzzing of the whole HTTP API from its own OpenAPI spec (schemathesis, bounded):
no generated request may produce a 5xx. Runs the real `schemathesis` CLI against the real app.

Excluded: routes that stream or wait for a run by design (SSE, sync runs, OpenAI-compatible
completions), the login/logout pair (failed logins would rate-limit the loopback address for the rest
of the suite; logout would revoke the fuzzer's own token) and bulk uploads (covered by their own
tests, including malformed input)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.client import Api, linear_flow
from tests.support.stack import Stack

EXCLUDE = r"(/events|/api/v1/run/|/openai/|/api/auth/log(in|out)|/batches$|/webhook/)"


def test_fuzzed_requests_never_get_a_server_error(
    api: Api, running_stack: Stack, tmp_path: Path
) -> None:
    api.create_flow(linear_flow(("t", "template", {"template": "fuzz"})))  # something to find
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(st),
        "run",
        f"{running_stack.base_url}/schema/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        os.environ.get("FUZZ_EXAMPLES", "15"),
        "--header",
        f"Authorization: Bearer {api.token}",
        "--exclude-path-regex",
        EXCLUDE,
        "--request-timeout",
        "20",
        "--seed",
        "20261125",
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    (tmp_path.parent / "schemathesis.out").write_text(result.stdout)
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]
