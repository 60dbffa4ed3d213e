#!/usr/bin/env bash
# Set up .venv (if needed) and run the tests: `bash scripts/test.sh [pytest args]`.
# Tiers: the default run skips tests marked heavy (end-to-end DVC runs) and slow (real data,
# benchmarks); `-m quick` runs the unit tests only (under a minute), `-m heavy` or `-m slow` those.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
