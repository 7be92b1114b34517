"""The designer's vitest unit tests (stores, graph logic, SSE parser, schema forms), run from pytest
so the project's single test command covers them: `npm test -- --run` in frontend/."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.frontend import FRONTEND, ensure_node_modules


@pytest.mark.timeout(900)
def test_frontend_unit_tests_pass() -> None:
    npm = ensure_node_modules()
    proc = subprocess.run(
        [npm, "test", "--", "--run"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert " passed" in output and " failed" not in output, output[-3000:]
