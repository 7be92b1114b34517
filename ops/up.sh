#!/usr/bin/env bash
# ops/up.sh: THE start command (README). Installs/starts PostgreSQL and RabbitMQ if needed
# (ops/services.sh), builds the designer if needed, then `flowstudio up`: creates the database if
# missing, migrates, and runs the API (http://localhost:8005, serving the designer), an orchestrator
# and workers, restarting any that die. Ctrl-C stops.
# Extra arguments go to `flowstudio up` (e.g. --workers 4 --concurrency 16).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/ops/services.sh"
# First start: create .env from .env.example with a random SECRET_KEY (FLOWSTUDIO_ENV_FILE= skips it).
# It holds SECRET_KEY and database credentials: readable by its owner only (mode 0600).
ENV_FILE="${FLOWSTUDIO_ENV_FILE-.env}"
if [ -n "$ENV_FILE" ] && [ ! -f "$ENV_FILE" ]; then
  key="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')"
  (umask 077 && sed "s|^SECRET_KEY=.*|SECRET_KEY=$key|" .env.example > "$ENV_FILE")
  echo "created $ENV_FILE (mode 0600; edit it to configure Flowstudio)"
fi
if [ -n "$ENV_FILE" ] && [ -f "$ENV_FILE" ] && [ -n "$(find "$ENV_FILE" -perm /077 -print -quit)" ]; then
  echo "warning: $ENV_FILE is readable by group/others; run: chmod 600 $ENV_FILE" >&2
fi
# Build the designer (served by the API at /) when npm is available and the build is missing or stale
# (FLOWSTUDIO_BUILD_UI=0 skips it).
if [ "${FLOWSTUDIO_BUILD_UI:-1}" = 1 ] && command -v npm >/dev/null 2>&1 && [ -f frontend/package.json ]; then
  if [ ! -f frontend/dist/index.html ] || [ -n "$(find frontend/src frontend/index.html \
       frontend/package-lock.json -newer frontend/dist/index.html -print -quit)" ]; then
    (cd frontend && npm ci --no-audit --no-fund && npm run build)
  fi
fi
exec .venv/bin/flowstudio up "$@"
