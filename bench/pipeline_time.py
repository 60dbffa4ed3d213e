"""Where the default pipeline's time goes: per stage, the wall time, the time in real work
(optimisation steps, feature extraction, sampling) and the overhead around it; then
the same default pipeline swept as 4 queued DVC experiments with 1 and with 2 workers.

    .venv/bin/python bench/pipeline_time.py                      # this working tree
    .venv/bin/python bench/pipeline_time.py --baseline f81ec24   # an earlier commit first, then this tree: the ratio
    .venv/bin/python bench/pipeline_time.py --rev f81ec24        # that commit alone
    .venv/bin/python bench/pipeline_time.py --queue              # add the 4-experiment sweeps
    .venv/bin/python bench/pipeline_time.py --results-setup /tmp/mnist_raw   # one run of docs/results.md's set-up

It copies the project into a temporary folder (tracked and untracked-but-not-ignored
files, committed there as a fresh git repository, or the commit ``--rev``), links this
project's .venv into it, and runs `dvc repro --force` there: a first run on a new MLflow
store, as a fresh clone does. Each stage's "wall" is measured from outside (the time between
DVC's "Running stage" lines, so DVC's own hashing and lock writing count); the parts
inside come from the stages' own clock (``BVAE_TIMING``, :mod:`pipeline.hardware.timing`;
columns stay empty for a commit that predates it). ``--queue`` then queues 4
experiments (seeds 1-4; run one at a time, ``-j 1``) and 4 more (seeds 5-8, ``-j 2``),
against a local tracking server (scripts/tracking_server.sh), and prints both sweep
times and their ratio. Also prints the time of a stage's ``--help``. ``-S key=value``
changes params.yaml in the copies (``-S threads=1``); ``--results-setup`` runs docs/results.md's
set-up instead of the default one.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "reference", "train_vae", "train_stage2", "evaluate")
PARTS = ("startup", "work", "diagnostics", "checkpoints", "tracking", "io", "other")


def sh(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def copy_project(dst: Path, rev: str | None) -> None:
    """A fresh git repository at ``dst`` with this working tree, or the commit ``rev``."""
    env = dict(os.environ)
    if rev:
        sh(["git", "clone", "-q", str(ROOT), str(dst)], ROOT, env)
        sh(["git", "checkout", "-q", rev], dst, env)
    else:
        files = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT, env).stdout.split()
        for f in files:
            if (ROOT / f).is_file():
                (dst / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, dst / f)
        for cmd in (
            ["git", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "bench"],
        ):
            sh(cmd, dst, env)
    (dst / ".venv").symlink_to(sys.prefix)


def repro(project: Path, env: dict) -> tuple[float, dict]:
    """`dvc repro --force` (every stage runs, as `scripts/repro.sh` does on a new MLflow store, even
    where the committed outputs would let DVC skip one) with each stage's wall time taken from
    DVC's "Running stage" lines."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro", "--force"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    starts, tail = [], []
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if line.startswith("Running stage '"):
            starts.append((line.split("'")[1], time.perf_counter()))
    if proc.wait():
        sys.exit("dvc repro failed:\n" + "".join(tail))
    total = time.perf_counter() - t0
    ends = [t for _, t in starts[1:]] + [t0 + total]
    return total, {name: end - start for (name, start), end in zip(starts, ends)}


def read_timing(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def all_workers_gone(project: Path, since: float) -> bool:
    """No DVC queue worker of ``project`` runs (checked 10 s after the start, once they have
    started): a failed experiment writes fewer timing lines, and the workers exit when idle."""
    if time.perf_counter() - since < 10:
        return False
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            if b"queue-worker" in args and Path(os.readlink(cmdline.parent / "cwd")).is_relative_to(project):
                return False
        except OSError:
            pass  # ended meanwhile
    return True


def help_seconds(project: Path, env: dict) -> float:
    t0 = time.perf_counter()
    sh(["python", "-m", "stages.train_vae", "--help"], project, env)
    return time.perf_counter() - t0


def stage_table(walls: dict, inside: dict) -> str:
    head = f"{'stage':13s} {'wall':>7s} " + " ".join(f"{p:>11s}" for p in PARTS) + f" {'overhead':>9s}"
    lines = [head, "-" * len(head)]
    for name in STAGES:
        t = inside.get(name)
        cells = " ".join(f"{t[p]:10.2f}s" if t else f"{'':>11s}" for p in PARTS)
        share = f"{100 * t['overhead_share']:8.1f}%" if t else f"{'':>9s}"
        lines.append(f"{name:13s} {walls.get(name, 0):6.1f}s {cells} {share}")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep(project: Path, env: dict, seeds: range, workers: int) -> float:
    """Queue one experiment per seed, run the queue with ``workers`` workers, return its wall time
    (and print how much of it the stages took, from their ``BVAE_TIMING`` lines)."""
    timing = Path(env["BVAE_TIMING"])
    before = len(read_timing(timing))
    for seed in seeds:
        sh(["dvc", "exp", "run", "--queue", "-S", f"train.seed={seed}"], project, env)
    t0 = time.perf_counter()
    sh(["dvc", "queue", "start", "-j", str(workers)], project, env)
    # The events: the 3 stages each experiment re-runs (train_vae, train_stage2, evaluate)
    # wrote their timing lines (a file read, where `dvc queue status` is a DVC process, a CPU
    # second each, that would compete with the workers); then the queue's own status says
    # nothing is queued or running (DVC has committed the results).
    while len(read_timing(timing)) < before + 3 * len(seeds) and not all_workers_gone(project, t0):
        time.sleep(0.5)
    while True:
        status = sh(["dvc", "queue", "status"], project, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(1)
    seconds = time.perf_counter() - t0
    stages = read_timing(timing)[before:]
    print(
        f"-j {workers}: {len(stages)} stage runs, {sum(t['wall'] for t in stages):.1f} s of stage wall time in "
        f"{seconds:.1f} s"
    )
    if status.count("Success") < len(seeds):
        sys.exit(f"the sweep with -j {workers} did not succeed:\n{status}")
    sh(["dvc", "queue", "remove", "--success"], project, env, check=False)
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="run this commit of the project instead of the working tree")
    ap.add_argument("--baseline", help="run this commit first, then the working tree (or --rev), and print the ratio")
    ap.add_argument("--queue", action="store_true", help="also time 4 queued experiments with -j 1 and -j 2")
    ap.add_argument(
        "--results-setup",
        metavar="DATA_ROOT",
        help="run one run of docs/results.md's set-up instead of the default pipeline (MNIST under DATA_ROOT/MNIST/raw)",
    )
    ap.add_argument(
        "--set", "-S", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml value (repeatable)"
    )
    ap.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = ap.parse_args()
    import yaml

    overrides = RESULTS_SETUP | {"prepare.data_root": args.results_setup} if args.results_setup else {}
    overrides |= {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    revs = ([args.baseline] if args.baseline else []) + [args.rev]
    results = [run_copy(rev, args.queue, overrides) for rev in revs]
    if args.baseline:
        base, new = results
        print(
            f"\n{'results set-up' if args.results_setup else 'pipeline'}: {base['rev']} {base['pipeline_s']:.1f} s (1.00x), {new['rev']} "
            f"{new['pipeline_s']:.1f} s ({base['pipeline_s'] / new['pipeline_s']:.2f}x faster)"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


# One run of docs/results.md's set-up (its running_gamma k=1 configuration, seed 0): MNIST, 10k
# training images, conv latent 16, 10 epochs of batch 100; stage 2 3 x 512, 100 epochs; FID on the
# test set; likelihood with 16 importance samples on a fixed 2,000 of the test images (with each
# bits/dim mean's standard error). prepare.data_root: a folder holding MNIST/raw/. The page's
# runs predate the validation split and train on all 10,000 images: val_fraction 0.
RESULTS_SETUP = {
    "prepare.dataset": "mnist",
    "prepare.limit_train": 10000,
    "prepare.val_fraction": 0.0,
    "train.latent_dim": 16,
    "train.epochs": 10,
    "train.batch_size": 100,
    "stage2.width": 512,
    "stage2.epochs": 100,
    "stage2.batch_size": 100,
    "stage2.lr": 0.001,
    "evaluate.num_samples": None,
    "evaluate.nll_images": 2000,
}


def set_params(project: Path, overrides: dict) -> None:
    """Change params.yaml of the copy (dotted keys)."""
    import yaml

    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        *parents, last = key.split(".")
        node = params
        for name in parents:
            node = node[name]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_copy(rev: str | None, queue: bool, overrides: dict | None = None) -> dict:
    """Measure the pipeline of commit ``rev`` (None: the working tree) in a fresh copy, with
    ``overrides`` (dotted params keys) set in its params.yaml."""
    with tempfile.TemporaryDirectory(prefix="bvae-bench-") as tmp:
        project, timing = Path(tmp) / "project", Path(tmp) / "timing.jsonl"
        project.mkdir()
        copy_project(project, rev)
        if overrides:
            set_params(project, overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BVAE_"))}
        env |= {"PATH": f"{project / '.venv' / 'bin'}:{env['PATH']}", "BVAE_TIMING": str(timing)}
        return measure(project, env, timing, rev, queue)


def measure(project: Path, env: dict, timing: Path, rev: str | None, queue: bool) -> dict:
    result = {"rev": rev or "working tree", "cpus": len(os.sched_getaffinity(0)), "help_s": help_seconds(project, env)}
    total, walls = repro(project, env)
    inside = {t["stage"]: t for t in read_timing(timing)}
    result |= {"pipeline_s": total, "stage_wall_s": walls, "stages": inside}
    print(f"default pipeline ({result['rev']}, fresh copy, new MLflow store, {result['cpus']} CPUs): {total:.1f} s")
    print(f"`python -m stages.train_vae --help`: {result['help_s']:.2f} s\n")
    print(stage_table(walls, inside))
    if queue:
        port = free_port()
        sh(["bash", "scripts/tracking_server.sh"], project, env | {"PORT": str(port)})
        qenv = env | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        try:
            one = sweep(project, qenv, range(1, 5), 1)
            two = sweep(project, qenv, range(5, 9), 2)
        finally:
            sh(["bash", "scripts/tracking_server.sh", "stop"], project, env, check=False)
        result |= {"queue_j1_s": one, "queue_j2_s": two}
        print(
            f"\n4 queued experiments (tracking server): -j 1 {one:.1f} s (1.00x), -j 2 {two:.1f} s ({one / two:.2f}x)"
        )
    return result


if __name__ == "__main__":
    main()
