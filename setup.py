"""Build step: put the SQL migrations and the built designer inside the wheel (flowstudio/_data/).

pyproject.toml holds all the metadata; this file only extends `build_py`. The migrations are copied
from migrations/. The designer is copied from frontend/dist when it is up to date; otherwise, when
Node.js >= 20 with npm is on PATH (and FLOWSTUDIO_BUILD_UI is not 0), it is built first
(`npm ci && npm run build`); without Node the wheel is built without it and the API's `/` says how to
get it. Editable installs skip all this: they read migrations/ and frontend/dist from the checkout.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("flowstudio.build")


def _node_major() -> int:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return 0
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.CalledProcessError):
        return 0


def _dist_is_fresh(frontend: Path) -> bool:
    index = frontend / "dist" / "index.html"
    if not index.is_file():
        return False
    built = index.stat().st_mtime
    sources = [frontend / "index.html", frontend / "package-lock.json", *frontend.glob("src/**/*")]
    return all(p.stat().st_mtime <= built for p in sources if p.is_file())


def _designer_dist() -> Path | None:
    frontend = ROOT / "frontend"
    if not (frontend / "package.json").is_file():
        return None
    if _dist_is_fresh(frontend):
        return frontend / "dist"
    if os.environ.get("FLOWSTUDIO_BUILD_UI", "1") == "0" or _node_major() < 20:
        log.warning("designer not bundled: Node.js >= 20 with npm is needed to build it")
        return None
    npm = shutil.which("npm") or "npm"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=frontend, check=True)
    subprocess.run([npm, "run", "build"], cwd=frontend, check=True)
    return frontend / "dist"


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads migrations/ and frontend/dist from the checkout
        data = Path(self.build_lib) / "flowstudio" / "_data"
        shutil.rmtree(data, ignore_errors=True)
        (data / "migrations").mkdir(parents=True)
        for sql in sorted((ROOT / "migrations").glob("*.sql")):
            shutil.copy2(sql, data / "migrations" / sql.name)
        dist = _designer_dist()
        if dist is not None:
            shutil.copytree(dist, data / "ui")


setup(cmdclass={"build_py": BuildWithData})
