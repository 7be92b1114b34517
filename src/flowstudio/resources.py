"""Where the files that ship with Flowstudio are: SQL migrations and the built designer.

A wheel carries them inside the package (`flowstudio/_data/migrations`, `flowstudio/_data/ui`, put
there by setup.py's build step); a source checkout (editable install, tests) has them at the top
level (`migrations/`, `frontend/dist`). `migrations_dir()` and `ui_dist(configured)` look in that
order; UI_DIST, when set, wins for the designer. Neither depends on the working directory, so
`flowstudio up` works from any directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parents[2]


def migrations_dir() -> Path:
    candidates = [PACKAGE_DATA / "migrations", CHECKOUT / "migrations"]
    for c in candidates:
        if (c / "0001_init.sql").is_file():
            return c
    raise FileNotFoundError(
        "migrations not found (looked in: " + ", ".join(str(c) for c in candidates) + ")"
    )


def ui_dist(configured: str = "") -> Path | None:
    """The built designer's directory, or None when this install has none."""
    candidates = [Path(configured)] if configured else []
    candidates += [PACKAGE_DATA / "ui", CHECKOUT / "frontend" / "dist"]
    for c in candidates:
        if (c / "index.html").is_file():
            return c
    return None
