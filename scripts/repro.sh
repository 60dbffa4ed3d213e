#!/usr/bin/env bash
# Set up .venv (if needed) and run the whole pipeline with DVC: `bash scripts/repro.sh [dvc repro args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
bvae check          # params.yaml, and prepare.data_root named by its key if it is missing
# A new MLflow store gets a record of every stage. Without --force, a fresh clone would
# skip `evaluate`: its inputs reproduce bit for bit and its outputs are committed, so DVC
# rightly calls it up to date, and the store would have no FIDs and no registered model.
force=()
if [ -z "${MLFLOW_TRACKING_URI:-}" ] && [ ! -e mlflow.db ]; then force=(--force); fi
dvc repro "${force[@]}" "$@"
echo
echo "pipeline time: $(( $(date +%s) - start )) s"
echo
python - <<'PY'
import json
from pipeline.reports.compare import best_sampler, fid_spaces
m, ref = json.load(open("metrics/evaluate.json")), json.load(open("metrics/reference.json"))
fids = sorted(k for k in m if k.startswith("fid_"))
best = {best_sampler(m, space) for space in fid_spaces(m)}  # per feature space: the sampler of lowest FID
for key in fids:
    floor = ref.get(f"fid_{key[4:].split('_')[0].split('-')[0]}_train_vs_test")  # its feature space's floor
    scale = f"  {m[key] / floor:6.1f}x the floor {floor:.3g} (real training vs test images)" if floor else ""
    print(f"  {key:28s} {m[key]:8.3f}{scale}{'   <- the best sampler' if key in best else ''}")
chosen = {k: v for k, v in json.load(open("metrics/all/evaluate.json")).items() if k.startswith("selection_fid_")}
if chosen:  # what evaluate registered: the sampler of lowest FID against the validation images, not the test images
    key = min(chosen, key=chosen.get)
    on = "validation" if json.load(open("metrics/prepare.json")).get("num_val") else "training"
    print(f"  registered generator: {key.removeprefix('selection_fid_').split('_', 1)[1]} (FID {chosen[key]:.3f} against the {on} images, the lowest)")
for key in sorted(k for k in m if k.startswith(("nll_iwae", "bpd_iwae"))):
    print(f"  {key:34s} {m[key]:8.3f}")
PY
ui=$(bvae ui --address)
cat <<TXT

Results
  metrics:        metrics/*.json            (dvc metrics show: FIDs, bits/dim, final gamma and beta_eff)
                  metrics/all/*.json        (every metric: KID, precision/recall, every likelihood bound)
  sample grids:   plots/evaluate/{real,rec,gen1,gen2,...}.png
  loss curves:    plots/train_vae/history.csv, plots/train_stage2/history.csv   (dvc plots show)
  models:         models/vae.pt, models/stage2.pt, models/classifier.pt; registered: models:/balanced-vae-generator@champion
  MLflow store:   ${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
MLflow UI
  .venv/bin/bvae ui      then open $ui
TXT
