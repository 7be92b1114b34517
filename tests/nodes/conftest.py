"""The one-node tier: real node code run in-process by `tests/support/noderun.py`, no worker.

LLM nodes talk to the local fake OpenAI server (`fake`, tests/conftest.py). Run alone with
`ops/test.sh tests/nodes` (README "Testing").
"""

from tests.support.tier_fixtures import anyio_backend, node_registry  # noqa: F401
