#!/usr/bin/env bash
# Create (or update) the project environment in .venv from the pinned lock file.
#
# Needs only Python 3.11 and git. Installs a pinned `uv`, then every package at the
# exact version and hash in requirements.lock (torch 2.13.0 and torchvision 0.28.0
# from PyPI, a matching pair), compiled to bytecode, then this project in editable mode.
# Re-running is cheap: nothing is reinstalled while requirements.lock, pyproject.toml and
# this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "error: Python 3.11 is required (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
}

stamp=.venv/.installed
want=$(cat requirements.lock pyproject.toml scripts/setup.sh | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

start=$(date +%s)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
# --require-hashes: every wheel must match the hash recorded in the lock file.
# --compile-bytecode: write every module's .pyc now, so no process compiles torch, MLflow and
# DVC from source at start-up (about 5 s a process where .pyc files are not written later,
# e.g. under PYTHONDONTWRITEBYTECODE=1).
.venv/bin/uv pip install --python .venv/bin/python --require-hashes --compile-bytecode -r requirements.lock
.venv/bin/uv pip install --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
echo "environment ready in .venv ($(( $(date +%s) - start )) s)"
