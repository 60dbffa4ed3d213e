"""The per-run numbers behind a comparison, kept beside its figures so that its page can be
regenerated without the MLflow store that made it (`bvae compare --runs FOLDER/runs.csv`).

- ``runs.csv``: one line per pipeline run: the experiment and filter it was read with, its id,
  name, start and end (ms since the epoch), code commit, then ``param:<key>`` (the strings
  MLflow holds) and ``metric:<key>`` (its raw metrics, before :func:`compare.derived`; empty:
  not logged by that run), columns sorted by name;
- ``curves.csv``: stage 1's training curves, one line per run, metric and epoch.

Floats are written with ``repr``, the shortest text that reads back to the same float, so the
page and tables rebuilt from these files are byte for byte those built from the store.
"""

import csv
from pathlib import Path

from pipeline import PipelineError
from pipeline.files import atomic_path
from pipeline.reports.compare import Row

RUN_FIELDS = ("experiment", "filter", "run_id", "name", "start", "end", "commit")
CURVE_FIELDS = ("run_id", "metric", "step", "value")


def write(rows: list[Row], folder: Path, experiment: str, filter_string: str) -> list[Path]:
    """runs.csv and curves.csv of ``rows`` in ``folder``; returns their paths."""
    params = sorted({k for r in rows for k in r.params})
    metrics = sorted({k for r in rows for k in r.metrics})
    header = [*RUN_FIELDS, *(f"param:{k}" for k in params), *(f"metric:{k}" for k in metrics)]
    paths = [folder / "runs.csv", folder / "curves.csv"]
    with atomic_path(paths[0]) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        for r in rows:
            line = [experiment, filter_string, r.run_id, r.name, r.start, r.end, r.commit]
            line += [r.params.get(k, "") for k in params]
            line += [repr(float(r.metrics[k])) if k in r.metrics else "" for k in metrics]
            out.writerow(line)
    with atomic_path(paths[1]) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(CURVE_FIELDS)
        for r in rows:
            for metric in sorted(r.curves):
                out.writerows([r.run_id, metric, step, repr(float(v))] for step, v in r.curves[metric])
    return paths


def read(runs_csv: Path) -> tuple[list[Row], str, str]:
    """The rows of a runs.csv (and the curves.csv beside it), and the experiment and filter
    they were read with."""
    curves_csv = runs_csv.parent / "curves.csv"
    for path in (runs_csv, curves_csv):
        if not path.is_file():
            raise PipelineError(f"{path} not found: `bvae compare --experiment NAME --out FOLDER` writes it")
    with open(runs_csv, newline="") as f:
        lines = list(csv.DictReader(f))
    if not lines or lines[0].keys() < set(RUN_FIELDS):
        raise PipelineError(
            f"{runs_csv}: no runs, or not a runs.csv of `bvae compare` (columns {', '.join(RUN_FIELDS)})"
        )
    curves: dict[str, dict[str, list]] = {}
    with open(curves_csv, newline="") as f:
        for c in csv.DictReader(f):
            curves.setdefault(c["run_id"], {}).setdefault(c["metric"], []).append((int(c["step"]), float(c["value"])))
    rows = []
    for line in lines:
        rows.append(
            Row(
                line["run_id"],
                line["name"],
                {k[len("param:") :]: v for k, v in line.items() if k.startswith("param:") and v != ""},
                {k[len("metric:") :]: float(v) for k, v in line.items() if k.startswith("metric:") and v != ""},
                curves=curves.get(line["run_id"], {}),
                start=int(line["start"]),
                end=int(line["end"]),
                commit=line["commit"],
            )
        )
    return rows, lines[0]["experiment"], lines[0]["filter"]
