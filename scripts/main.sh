#!/usr/bin/env bash
# The main job on a fresh machine: install the toolkit with its server extra
# into .venv, then serve the embedded demo model (a digit classifier) with the
# TF Serving REST API and KServe V2 on port 8501. Extra arguments go to
# `savedmodel serve`, e.g. scripts/main.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[server]"
exec "$VENV/bin/savedmodel" serve "$@"
