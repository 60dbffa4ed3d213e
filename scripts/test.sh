#!/usr/bin/env bash
# Set up .venv (if needed) and run the tests: `bash scripts/test.sh [pytest args]`.
# The default run skips tests marked slow; `bash scripts/test.sh -m slow` runs those.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
