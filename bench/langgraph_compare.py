"""Flowstudio vs LangGraph + PostgresSaver, side by side: `pip install -e .[bench]` then
`python bench/langgraph_compare.py [--rounds 3] [--json]` (the code is flowstudio.bench.langgraph_compare).
"""

import sys

from flowstudio.bench.langgraph_compare import main

if __name__ == "__main__":
    sys.exit(main())
