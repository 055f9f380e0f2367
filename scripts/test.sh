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

# --- web converter (converters/web): TF.js for the Node.js tests and the demo page, Chromium for the browser
# test. Idempotent: npm ci only when the lock file changed, apt only when /usr/bin/chromium is missing.
if command -v npm >/dev/null 2>&1; then
    if [ ! -f tests/js/node_modules/.package-lock.json ] \
        || [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
        npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
    fi
fi
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# --- end web converter ---

"$PY" -m ruff check .
# pytest exits 5 when it collected no test: that fails this script too.
if [ $# -gt 0 ]; then
    exec "$PY" -m pytest -n 2 -q -p no:cacheprovider "$@"
fi
# The Ray tests start Ray clusters (about 1 GB and both cores each): they run after the rest, in one process,
# so that two clusters never compete for the two cores.
"$PY" -m pytest -n 2 -q -p no:cacheprovider -m "not ray"
exec "$PY" -m pytest -q -p no:cacheprovider -m ray
