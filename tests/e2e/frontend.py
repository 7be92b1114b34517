"""Frontend tooling for the e2e tests: find node/npm/chromium (failing loudly when missing), install
the npm dependencies (`npm ci`, only when package-lock.json changed) and build the designer
(`npm run build`, skipped when frontend/dist is newer than every source file).

`test_frontend_unit.py` calls `ensure_node_modules()`; `test_designer_e2e.py` calls `build_dist()`
and `chromium_path()` and runs the playwright-core scripts with `run_node()`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
DIST = FRONTEND / "dist"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
SOURCES = (
    "src",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
)


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; CI needs: {install_hint}", pytrace=False)
    return path


def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "chromium is not installed; CI needs: apt-get install -y chromium (Debian's package; never "
        "`npx playwright install`)",
        pytrace=False,
    )


def _run(args: list[str], timeout: float) -> None:
    proc = subprocess.run(
        args, cwd=FRONTEND, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}",
            pytrace=False,
        )


def ensure_node_modules() -> str:
    require_tool("node", "apt-get install -y nodejs (Node >= 20)")
    npm = require_tool("npm", "apt-get install -y npm (npm >= 10)")
    stamp = FRONTEND / "node_modules" / ".package-lock.json"
    lock = FRONTEND / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        _run([npm, "ci", "--no-audit", "--no-fund"], timeout=600)
    return npm


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in SOURCES:
        path = FRONTEND / name
        files = path.rglob("*") if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


def build_dist() -> Path:
    npm = ensure_node_modules()
    index = DIST / "index.html"
    if not index.exists() or index.stat().st_mtime < _newest_source_mtime():
        _run([npm, "run", "build"], timeout=600)
    assert index.exists(), "npm run build produced no frontend/dist/index.html"
    return DIST


def run_node(script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    node = require_tool("node", "apt-get install -y nodejs (Node >= 20)")
    return subprocess.run(
        [node, script],
        cwd=FRONTEND,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
