#!/usr/bin/env bash
# Run every balancing strategy at the same budget and seed, as queued DVC experiments,
# then compare them. Usage (from the repo root, with params.yaml set as you want it):
#
#   bash scripts/sweep_strategies.sh                         # all strategies, current params
#   bash scripts/sweep_strategies.sh -S train.epochs=20      # extra overrides for every run
#
# Each configuration becomes one `dvc exp run --queue`; `dvc queue start` runs them one
# at a time (parallel workers need a tracking server, not sqlite: see the README). Every
# run lands in the MLflow experiment $MLFLOW_EXPERIMENT_NAME (default balanced-vae);
# the table and figures go to reports/strategies/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

configs=(
  "train.balance.strategy=fixed train.balance.beta=1.0"
  "train.balance.strategy=fixed train.balance.beta=0.1"
  "train.balance.strategy=annealed train.balance.beta=1.0"
  "train.balance.strategy=annealed train.balance.beta=1.0 train.balance.cyclical=true"
  "train.balance.strategy=learned_gamma"
  "train.balance.strategy=running_gamma"
  "train.balance.strategy=sigma"
)

# The stages every configuration shares run once here; DVC's run-cache restores their
# outputs inside the queued experiments (which only hold git/DVC-tracked files).
dvc repro reference

for config in "${configs[@]}"; do
  args=()
  for kv in $config; do args+=(-S "$kv"); done
  dvc exp run --queue "${args[@]}" "$@"
done
dvc queue start -j 1
sleep 5
until status=$(dvc queue status) && ! grep -qE "Queued|Running" <<<"$status"; do sleep 20; done
echo "$status"
bvae compare --experiment "${MLFLOW_EXPERIMENT_NAME:-balanced-vae}" --out reports/strategies
