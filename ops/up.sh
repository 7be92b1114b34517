#!/usr/bin/env bash
# ops/up.sh: THE start command (README). Installs/starts PostgreSQL and RabbitMQ if needed
# (ops/services.sh), then `flowstudio up`: creates the database if missing, migrates, and runs the
# API (http://localhost:8005), an orchestrator and workers, restarting any that die. Ctrl-C stops.
# Extra arguments go to `flowstudio up` (e.g. --workers 4 --concurrency 16).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/ops/services.sh"
[ -f .env ] || cp .env.example .env
exec .venv/bin/flowstudio up "$@"
