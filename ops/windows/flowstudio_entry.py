"""Entry point of the frozen `flowstudio` executable (PyInstaller, ops/windows/flowstudio.spec).

`multiprocessing.freeze_support()` must run first: the worker's spawn process pool re-executes this
binary for its children, and on Windows those children would otherwise start another CLI.
"""

from __future__ import annotations

import multiprocessing
import sys

from flowstudio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
