#!/usr/bin/env bash
# ops/test.sh: THE test command (README; .ci/run calls exactly this). Installs/starts what is
# missing (ops/services.sh), checks formatting (black), lint (ruff) and types (mypy src and
# tests/support), then runs every pytest test
# except the long soak (run that with: ops/test.sh -m soak). Extra arguments go to pytest.
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/ops/services.sh"

.venv/bin/black --check --quiet src tests
.venv/bin/ruff check --quiet src tests
.venv/bin/mypy src tests/support

set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$code"
