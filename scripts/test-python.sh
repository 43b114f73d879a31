#!/usr/bin/env bash
# The Python peers of the proxy tests (websockets, python-socketio + aiohttp) in a venv
# under .build; idempotent. Tests create it themselves when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/plane-test-venv
if ! "$venv/bin/python" -c 'import websockets, socketio, aiohttp' >/dev/null 2>&1; then
  mkdir -p .build
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q websockets python-socketio aiohttp
fi
echo "test-python: ok ($("$venv/bin/pip" list 2>/dev/null | grep -iE '^(websockets|python-socketio|aiohttp) ' | tr -s ' ' | paste -sd ',' -))"
