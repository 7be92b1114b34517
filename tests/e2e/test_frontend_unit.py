"""The designer's static checks and vitest tests, run from pytest so the project's single test command
covers them (frontend/): `npx tsc -b` (types), `npm run lint` (ESLint with the react-hooks rules and
no floating promises) and `npm test -- --run` (stores, graph logic, the run-following client with fake
timers, component tests of forms and panels with Testing Library)."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.frontend import FRONTEND, ensure_node_modules


def run_npm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ensure_node_modules(), *args],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.timeout(700)
def test_frontend_typechecks() -> None:
    proc = run_npm("run", "typecheck")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


@pytest.mark.timeout(700)
def test_frontend_lint_passes() -> None:
    proc = run_npm("run", "lint")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


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
