"""The default pipeline on a machine doing something else too.

    .venv/bin/python bench/shared.py                  # this working tree
    .venv/bin/python bench/shared.py --rev f81ec24    # a commit
    .venv/bin/python bench/shared.py --only a,b,e     # some of the parts
    .venv/bin/python bench/shared.py --only a,b -S threads=1   # with params.yaml values

In fresh copies of the project (bench/pipeline_time.py's, with this .venv), each
`dvc repro --force` on a new MLflow store:

  (a) one default pipeline alone: the baseline of (b) to (d);
  (b) two default pipelines started together, in two copies: each one's time;
  (c) one default pipeline beside the default test run (scripts/test.sh, in a third
      copy, started first; the pipeline starts once pytest has collected its tests,
      and the test run is stopped when the pipeline ends);
  (d) 4 queued experiments (`train.seed` 1-4, each re-runs train_vae, train_stage2 and
      evaluate) run with `dvc queue start -j 1`, `-j 2` and `-j 4`, against a local
      tracking server;
  (e) training steps against a bare PyTorch loop (bench/steps.py, in the copy; the code of
      this bench's own commit or later: steps.py calls this code's training loop).

Each time is printed with its ratio to (a) (for (d): the first --jobs count's time over -j N's, the
speed-up; a count given more than once is timed each time and its mean used), (e) as ours / bare. Run it on a machine with nothing else running.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_time import copy_project, free_port, repro, set_params, sh, sweep  # noqa: E402

BENCH = Path(__file__).resolve().parent
OVERRIDES: dict = {}  # -S key=value: params.yaml values of every copy


def fresh(tmp: Path, name: str, rev: str | None) -> tuple[Path, dict]:
    """A fresh copy of the project at tmp/name and the environment its commands run in."""
    project = tmp / name
    project.mkdir()
    copy_project(project, rev)
    if OVERRIDES:
        set_params(project, OVERRIDES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BVAE_"))}
    env |= {
        "PATH": f"{project / '.venv' / 'bin'}:{env['PATH']}",
        "BVAE_TIMING": str(tmp / f"{name}.jsonl"),
    }
    return project, env


def alone(tmp: Path, rev: str | None) -> float:
    project, env = fresh(tmp, "alone", rev)
    total, _ = repro(project, env)
    return total


def side_by_side(tmp: Path, rev: str | None) -> list[float]:
    copies = [fresh(tmp, f"side{i}", rev) for i in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        return [f.result()[0] for f in [pool.submit(repro, p, e) for p, e in copies]]


def beside_tests(tmp: Path, rev: str | None) -> float:
    project, env = fresh(tmp, "pipeline", rev)
    tests, tenv = fresh(tmp, "tests", rev)
    # its temporary folders inside the copy: the processes its tests start run there
    suite = subprocess.Popen(
        ["bash", "scripts/test.sh", f"--basetemp={tests / 'pytest'}"],
        cwd=tests,
        env=tenv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    collected = threading.Event()

    def watch():  # the event: pytest printed "collected N items"
        for line in suite.stdout:
            if line.startswith("collected"):
                collected.set()
        collected.set()

    threading.Thread(target=watch, daemon=True).start()
    collected.wait()
    if suite.poll() is not None:
        sys.exit(f"the test run ended before its tests started (exit {suite.returncode})")
    try:
        total, _ = repro(project, env)
    finally:
        os.killpg(suite.pid, signal.SIGKILL)
        suite.wait()
        kill_under(tests)  # processes the tests started in sessions of their own
    return total


def kill_under(folder: Path) -> None:
    """SIGKILL every process of this user whose working folder is inside ``folder`` (not this one)."""
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            pid = int(cwd.parent.name)
            if pid != os.getpid() and Path(os.readlink(cwd)).is_relative_to(folder):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass  # ended meanwhile, or not ours


def queue(tmp: Path, rev: str | None, jobs: list[int]) -> list[list]:
    """[-j, seconds] for each sweep, in the order of ``jobs`` (a count may repeat: alternate
    them, e.g. 2,4,4,2, to see the VM's drift apart from the difference)."""
    project, env = fresh(tmp, "queue", rev)
    sh(["dvc", "repro"], project, env)  # prepare and reference, which the experiments share
    port = free_port()
    sh(["bash", "scripts/tracking_server.sh"], project, env | {"PORT": str(port)})
    qenv = env | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    try:
        return [[j, sweep(project, qenv, range(4 * i + 1, 4 * i + 5), j)] for i, j in enumerate(jobs)]
    finally:
        sh(["bash", "scripts/tracking_server.sh", "stop"], project, env, check=False)


def steps(tmp: Path, rev: str | None) -> dict:
    project, env = fresh(tmp, "steps", rev)
    shutil.copy(BENCH / "steps.py", tmp / "steps.py")  # this bench's, in the copy's folder
    out = sh(["python", str(tmp / "steps.py"), "--out", str(tmp / "steps.json")], project, env).stdout
    print(out, end="")
    return json.loads((tmp / "steps.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="run this commit of the project instead of the working tree")
    ap.add_argument("--only", default="a,b,c,d,e", help="the parts to run, comma-separated (default: all)")
    ap.add_argument("--jobs", default="1,2,4", help="(d): the worker counts, comma-separated, run in this order")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml value")
    ap.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = ap.parse_args()
    import yaml

    OVERRIDES.update({k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    parts, rev, jobs = args.only.split(","), args.rev, [int(j) for j in args.jobs.split(",")]
    result = {"rev": rev or "working tree", "cpus": len(os.sched_getaffinity(0)), "params": OVERRIDES}
    print(f"{result['rev']}, {result['cpus']} CPUs" + "".join(f", {k}={v}" for k, v in OVERRIDES.items()))
    with tempfile.TemporaryDirectory(prefix="bvae-shared-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        if "a" in parts or {"b", "c"} & set(parts):
            result["a"] = alone(tmp, rev)
            print(f"(a) alone:                 {result['a']:6.1f} s  1.00x")
        if "b" in parts:
            result["b"] = side_by_side(tmp, rev)
            print("(b) two side by side:      " + ", ".join(f"{t:6.1f} s  {t / result['a']:.2f}x" for t in result["b"]))
        if "c" in parts:
            result["c"] = beside_tests(tmp, rev)
            print(f"(c) beside the test run:   {result['c']:6.1f} s  {result['c'] / result['a']:.2f}x")
        if "d" in parts:
            result["d"] = runs = queue(tmp, rev, jobs)
            means = {j: statistics.mean(t for k, t in runs if k == j) for j in dict.fromkeys(jobs)}
            base = means[jobs[0]]
            print(
                "(d) 4 queued experiments:  "
                + ", ".join(f"-j {j} {t:6.1f} s {base / t:.2f}x" for j, t in means.items())
                + ("  (means of " + ", ".join(f"{t:.1f}" for _, t in runs) + ")" if len(runs) > len(means) else "")
            )
        if "e" in parts:
            result["e"] = steps(tmp, rev)
        print(f"bench: {time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
