#!/usr/bin/env bash
# Run every balancing strategy at the same budget, for N seeds each, as queued DVC
# experiments, then compare them. Usage (from the repo root, params.yaml set as you want
# it: your own images are `prepare.dataset: folder`, as for any run):
#
#   bash scripts/sweep_strategies.sh                          # every strategy, 1 seed
#   bash scripts/sweep_strategies.sh --seeds 3                # seeds 0, 1, 2 of each
#   bash scripts/sweep_strategies.sh --seeds 3 -S train.epochs=20   # overrides for every run
#
# The configurations (pipeline/reports/plan.py; `bvae answer` runs the same): fixed beta 1
# and 0.1, annealed to 1 (monotone and cyclical), learned gamma (log gamma at 10x the
# model's learning rate, so that it reaches the data's gamma within a short budget: see
# pipeline/balance/learned_gamma.py), running gamma at k = 1 and at the reference code's k = (2 * image side / latent_dim)^2, and sigma. A seed sets
# train.seed, stage2.seed and evaluate.seed; the data subset and the FID feature space
# (prepare, reference) are the same for all runs.
#
# Each run is one `dvc exp run --queue`; `dvc queue start` runs them one at a time
# (parallel workers need a tracking server, not sqlite: see docs/scaling.md). Every run lands in
# the MLflow experiment $MLFLOW_EXPERIMENT_NAME (default balanced-vae); the table, figures
# and report (seeds aggregated: mean +- std) go to reports/strategies/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

seeds=1
if [[ "${1:-}" == "--seeds" ]]; then
  seeds=${2:?--seeds needs a number}
  shift 2
fi
[[ "$seeds" =~ ^[1-9][0-9]*$ ]] || { echo "--seeds: expected a positive whole number, got '$seeds'" >&2; exit 2; }

# Check the data is visible to queued experiments, from params.yaml and any -S overrides
# given here; keep the params as they will be (for the reference rule for k, below).
params=$(python - "$@" <<'EOF'
import json, subprocess, sys
from pathlib import Path
import yaml
p, args = yaml.safe_load(open("params.yaml")), sys.argv[1:]
for flag, kv in zip(args, args[1:]):
    if flag in ("-S", "--set-param"):
        *path, last = kv.split("=", 1)[0].split(".")
        d = p
        for key in path:
            d = d[key]
        d[last] = yaml.safe_load(kv.split("=", 1)[1])
root = Path(p["prepare"]["data_root"]).resolve()
if p["prepare"]["dataset"] != "digits" and root.is_relative_to(Path.cwd()):
    tracked = subprocess.run(["git", "ls-files", str(root)], capture_output=True, text=True).stdout.split()
    if not any(t.endswith(".dvc") for t in tracked):
        sys.exit(f"prepare.data_root {p['prepare']['data_root']} is inside the repository but not versioned: queued "
                 "experiments run in clean copies and would not see it. Version it (dvc add <folder> and git add "
                 "<folder>.dvc) or set prepare.data_root to a path outside the repository.")
print(json.dumps(p))
EOF
)


# The stages every configuration shares run once here; DVC's run-cache restores their
# outputs inside the queued experiments (which only hold git/DVC-tracked files).
dvc repro reference

# The reference code's k = (2 * image side / latent_dim)^2, for the prepared images
# (latent_dim: auto resolved as train_vae will: pipeline/config/sizing.py).
k_ref=$(python - "$params" <<'EOF'
import json, sys
from pipeline.config import sizing
p, meta = json.loads(sys.argv[1]), json.load(open("data/prepared/meta.json"))
latent, _ = sizing.latent_dim(p["train"]["latent_dim"], meta["channels"], meta["image_size"])
print((2 * meta["image_size"] / latent) ** 2)
EOF
)
# The configurations (pipeline/reports/plan.py, as `bvae answer` runs them), one line each.
mapfile -t configs < <(python -c "import sys; from pipeline.reports import plan
for c in plan.configurations(float(sys.argv[1])): print(plan.dvc_args(c))" "$k_ref")

names=()
for ((seed = 0; seed < seeds; seed++)); do
  for config in "${configs[@]}"; do
    args=(-S "train.seed=$seed" -S "stage2.seed=$seed" -S "evaluate.seed=$seed")
    for kv in $config; do args+=(-S "$kv"); done
    said=$(dvc exp run --queue "${args[@]}" "$@")
    echo "$said"
    name=$(sed -n "s/^Queued experiment '\([^']*\)'.*/\1/p" <<<"$said")
    [[ -n "$name" ]] || { echo "dvc exp run --queue did not name the experiment it queued" >&2; exit 1; }
    names+=("$name")
  done
done
dvc queue start -j 1
# Wait for each experiment by name: `dvc queue status` lists running tasks, then queued ones,
# so one a worker takes between the two reads is in neither, and "nothing queued or
# running" alone can come before the last run ends.
ended() {
  status=$(dvc queue status) || return 1
  for name in "${names[@]}"; do
    grep -qE "^\S+\s+$name\s.*\s(Success|Failed)\s*$" <<<"$status" || return 1
  done
}
until ended; do sleep 20; done
echo "$status"
bvae compare --experiment "${MLFLOW_EXPERIMENT_NAME:-balanced-vae}" --out reports/strategies \
  --report reports/strategies/report.md
