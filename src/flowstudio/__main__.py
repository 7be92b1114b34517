"""`python -m flowstudio` is the `flowstudio` console script (used by `flowstudio up` for children)."""

import sys

from flowstudio.cli import main

sys.exit(main())
