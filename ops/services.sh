#!/usr/bin/env bash
# ops/services.sh: make sure the machine has what Flowstudio needs, then start what is down.
# Called by ops/test.sh and ops/up.sh (source it). Steps: apt packages if missing (PostgreSQL,
# RabbitMQ, chromium, bubblewrap, prometheus for promtool) -> start PostgreSQL if not accepting connections -> start RabbitMQ if not answering
# -> Python virtualenv in .venv with the project installed (editable, with dev extras).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
command -v rabbitmqctl >/dev/null 2>&1 || apt_install rabbitmq-server
command -v pg_isready >/dev/null 2>&1 || apt_install postgresql-client
# The designer's browser tests drive Debian's chromium with playwright-core (never a downloaded one).
command -v chromium >/dev/null 2>&1 || apt_install chromium
# The code node runs user Python in a bubblewrap sandbox (CODE_NODE=sandbox, the default).
[ -x /usr/bin/bwrap ] || apt_install bubblewrap
# promtool checks ops/prometheus/*.yml in the tests (tests/unit/test_ops_files.py); without the
# recommended node exporter; nothing here starts the prometheus server the package ships. Optional:
# the test skips (saying why) when promtool is missing.
if ! command -v promtool >/dev/null 2>&1; then
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
    || echo "warning: could not install promtool (Debian package prometheus)" >&2
fi
# Node >= 20.19 with npm builds the designer (Vite 8); Debian's nodejs 18 is too old, so only warn.
if ! command -v npm >/dev/null 2>&1; then
  echo "warning: npm not found: the designer cannot be built (install Node.js >= 20.19)" >&2
fi

if ! pg_isready -q -h 127.0.0.1 -p "${DB_PORT:-5432}"; then
  echo "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p "${DB_PORT:-5432}" && break; sleep 0.5; done
fi

if ! timeout 20 rabbitmqctl -q status >/dev/null 2>&1; then
  echo "starting RabbitMQ"
  $SUDO rabbitmq-server -detached || true
  timeout 120 rabbitmqctl await_startup
fi

PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
if ! "$ROOT/.venv/bin/python" -c "import flowstudio, pytest, black, ruff" >/dev/null 2>&1 \
   || [ "$ROOT/pyproject.toml" -nt "$ROOT/.venv/.installed" ]; then
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[dev]"
  touch "$ROOT/.venv/.installed"
fi
