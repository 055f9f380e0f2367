#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need into
# .venv (the toolkit with its test extras: Keras + TensorFlow CPU as the peer,
# onnxruntime, ...), checks lint, then runs pytest on both cores.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/runtime -k dense
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"

"$PY" -m ruff check .
# pytest exits 5 when it collected no test: that fails this script too.
exec "$PY" -m pytest -n 2 -q -p no:cacheprovider "$@"
