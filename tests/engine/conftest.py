"""The in-process engine tier: engine functions on a database cloned from a migrated template.

No API, broker or worker process: `env` (tests/support/engine_env.py) calls the engine the way they
do. Run alone with `ops/test.sh tests/engine` (README "Testing").
"""

from tests.support.tier_fixtures import (  # noqa: F401
    anyio_backend,
    engine_url,
    env,
    node_registry,
    template_db,
)
