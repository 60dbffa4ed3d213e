"""`bvae answer`: the answer page for a folder of images in one command.

In a copy of the project under the folder the user names (``OUT/project``: a clone of the
committed code, its own DVC cache and MLflow store, so the user's workspace, models and
runs are left as they are): prepare the images and the feature space once (`dvc repro
reference`), time a few steps of each model here, print the runs (every balancing
strategy for each seed, :mod:`pipeline.reports.plan`) with an estimate of their time,
run them one after another with `dvc repro`, and write the page (``OUT/results.md``,
figures in ``OUT/figures/``) with `bvae compare --report`. ``OUT/answer.json`` records the
settings and the runs finished: a rerun after an interrupt skips those and resumes the
one it stopped in from its checkpoint.

Longer than 300 lines because it is one command end to end: its options and help, the
project copy, the ledger that makes it resumable and the timing behind its estimate.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from stages.command import STOP_SAID, command

EXPERIMENT = "answer"


@click.command(name="answer")
@click.option(
    "--data",
    "data_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The folder of images: one subfolder per class (labelled), or images only (unlabelled).",
)
@click.option("--size", type=click.IntRange(4), required=True, help="Side in pixels the images are resized to.")
@click.option("--seeds", type=click.IntRange(1), default=2, show_default=True, help="Seeds per strategy.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the page (results.md), its figures, and the project copy the runs are made in.",
)
@click.option(
    "-S",
    "--set-param",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="A params.yaml value for every run, as `dvc exp run -S` takes it (e.g. -S train.epochs=20); repeatable.",
)
@click.option("--plan", "plan_only", is_flag=True, help="Prepare, print the runs and the estimate, and stop.")
@command
def main(data_root, size, seeds, out, overrides, plan_only):
    """Answer "is scaling the KL sound?" on your own images, in one command.

    Runs every balancing strategy (fixed beta 1 and 0.1, annealed, cyclical, learned
    gamma, running gamma at k = 1 and the reference code's k, sigma) for --seeds seeds on
    the folder --data at --size px, with params.yaml's other settings, and writes the
    page that compares them (the layout of docs/results.md) to OUT/results.md. Before
    the runs start it prints them and an estimate of their time on this machine; while
    they run, which one and the time left. Ctrl-C stops it: the same command continues
    where it stopped. The runs are in OUT/project (its MLflow store: `cd OUT/project &&
    bvae ui`).
    """
    from pipeline import PipelineError
    from pipeline.config import sizing
    from pipeline.config.params import config_hash, load_params
    from pipeline.files import read_json
    from pipeline.reports import plan

    out, data_root = out.resolve(), data_root.resolve()
    source = Path(__file__).resolve().parents[1]
    base = load_params(source / "params.yaml")  # the user's settings, with the folder's
    base["prepare"] |= {"dataset": "folder", "data_root": str(data_root), "image_size": size}
    for item in overrides:
        _set(base, item)
    settings = {"data": str(data_root), "size": size, "seeds": seeds, "overrides": list(overrides)}
    settings["params_hash"] = config_hash(base)  # params.yaml edited since: a different answer
    ledger_path = out / "answer.json"
    ledger = read_json(ledger_path) if ledger_path.is_file() else {"settings": settings, "done": {}}
    if ledger["settings"] != settings:
        raise PipelineError(
            f"{out} holds an answer for other settings ({_describe(ledger['settings'])}, or params.yaml as it was "
            "then); name another --out, or delete that folder to start again"
        )
    project = out / "project"
    env = _environment()
    if not (project / "dvc.yaml").is_file():
        _clone(source, project)
    _save(ledger, ledger_path)

    _write_params(project, base, {})
    # bvae check: the params, and each entry of the folder DVC could not hash, named with its fix
    if code := _child([sys.executable, "-m", "bvae.cli", "check"], project, env):
        sys.exit(code)
    _dvc(project, env, "repro", "reference")
    meta = read_json(project / "data" / "prepared" / "meta.json")
    channels, side, labelled = meta["channels"], meta["image_size"], meta.get("num_classes", 0) >= 2
    latent, said = sizing.latent_dim(base["train"]["latent_dim"], channels, side)
    runs = plan.runs(plan.reference_k(side, latent), seeds)
    rates = _rates(project, base, meta, latent)
    one = plan.estimate(base, meta["num_train"], meta["num_test"], rates)
    todo = [r for r in runs if r.name not in ledger["done"]]
    click.echo(
        f"\n{meta['num_train']:,} training and {meta['num_test']:,} test images of {channels}x{side}x{side}"
        f"{', ' + str(meta['num_classes']) + ' classes' if labelled else ', unlabelled'}; "
        f"stage 1: {base['train']['model'].get('arch', 'conv')} VAE, {said}"
    )
    click.echo(
        f"measured here: {1e3 * rates.stage1_step_s:.1f} ms per stage-1 step, {1e3 * rates.stage2_step_s:.2f} ms per "
        f"stage-2 step, {rates.feature_images_per_s:,.0f} images/s through the feature network"
    )
    click.echo(f"{len(runs)} runs ({len(runs) - len(todo)} done before), about {plan.duration(one)} each:")
    for i, r in enumerate(runs, 1):
        state = f"done, {plan.duration(ledger['done'][r.name])}" if r.name in ledger["done"] else "to run"
        click.echo(f"  {i:2d}. {r.name:34s} {state}")
    click.echo(f"estimate for the {len(todo)} to run: {plan.duration(one * len(todo))}\n")
    if plan_only:
        return
    for left, r in zip(range(len(todo), 0, -1), todo):
        index = runs.index(r) + 1
        taken = list(ledger["done"].values())  # measured run times: the estimate once there are some
        per_run = sum(taken) / len(taken) if taken else one
        click.echo(
            f"[{index}/{len(runs)}] {r.name}: {r.describe()}  (about {plan.duration(per_run * left)} left in all)"
        )
        t0 = time.perf_counter()
        try:
            _write_params(project, base, r.params)
            _dvc(project, env, "repro")
        except KeyboardInterrupt as e:
            e.args = (f"{len(ledger['done'])} of {len(runs)} runs done; the same command continues from {r.name}",)
            raise
        ledger["done"][r.name] = round(time.perf_counter() - t0, 1)
        _save(ledger, ledger_path)
        click.echo(f"[{index}/{len(runs)}] {r.name} done in {plan.duration(ledger['done'][r.name])}")
    page = out / "results.md"
    compare = [sys.executable, "-m", "bvae.cli", "compare", "--experiment", EXPERIMENT, "--out", str(out / "figures")]
    if _child(
        compare + ["--report", str(page), "--note", f"Data: {data_root} at {size} px, made by `bvae answer`."],
        project,
        env,
    ):
        raise PipelineError("`bvae compare` failed (above); the runs are done: the same command writes the page")
    click.echo(f"the answer for {data_root}: {page} (the runs: cd {project} && bvae ui)")


def _save(ledger: dict, path: Path) -> None:
    """The ledger, written atomically; not an output that a stopped command removes."""
    from pipeline.files import atomic_path

    with atomic_path(path, output=False) as tmp:
        tmp.write_text(json.dumps(ledger, indent=2) + "\n")


def _describe(settings: dict) -> str:
    return f"--data {settings['data']} --size {settings['size']} --seeds {settings['seeds']}" + "".join(
        f" -S {o}" for o in settings["overrides"]
    )


def _environment() -> dict:
    """The runs' environment: this Python's tools first; the copy's own MLflow store."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
    }


def _clone(source: Path, project: Path) -> None:
    """A clone of the committed project (a working tree's uncommitted edits are not in it: said)."""
    from pipeline import PipelineError

    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=source, capture_output=True, text=True
    )
    if dirty.returncode != 0:
        raise PipelineError(f"{source} is not a git repository: bvae answer runs a clone of the project's commit")
    if dirty.stdout.strip():
        click.echo(f"note: {source} has uncommitted changes; the runs use its last commit")
    project.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(source), str(project)], check=True)


def _set(params: dict, item: str) -> None:
    """Apply one ``key.path=value`` (the value read as YAML, as DVC's -S does)."""
    import yaml

    from pipeline import PipelineError

    key, sep, value = item.partition("=")
    if not sep:
        raise PipelineError(f"-S {item}: expected KEY=VALUE with a key params.yaml has")
    _put(params, key, yaml.safe_load(value), f"-S {item}")


def _put(params: dict, key: str, value, what: str) -> None:
    """Set the dotted ``key`` of ``params`` (which must have it) to ``value``."""
    from pipeline import PipelineError

    *path, last = key.split(".")
    node = params
    for part in path:
        if not isinstance(node.get(part), dict):
            raise PipelineError(f"{what}: params.yaml has no section {key.rsplit('.', 1)[0]}")
        node = node[part]
    if last not in node:
        raise PipelineError(f"{what}: expected KEY=VALUE with a key params.yaml has")
    node[last] = value


def _write_params(project: Path, base: dict, overrides: dict) -> None:
    """The copy's params.yaml: ``base`` with the run's dotted-key ``overrides``; checked."""
    import copy

    import yaml

    from pipeline.config.schema import validate
    from pipeline.files import atomic_path

    params = copy.deepcopy(base)
    for key, value in overrides.items():
        _put(params, key, value, key)
    validate(params)
    with atomic_path(project / "params.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(params, sort_keys=False))


def _child(args: list[str], project: Path, env: dict) -> int:
    """Run ``args`` in the copy, its output shown as it comes, and return its exit code. The
    child runs in its own session, so Ctrl-C reaches this command only (a child that is still
    importing would print a traceback): on Ctrl-C or SIGTERM the child's group gets SIGTERM
    (a stage saves its checkpoint and marks its run KILLED, silently: this command says the one
    line) and this command waits for the whole group to end before it raises."""
    import signal

    proc = subprocess.Popen(args, cwd=project, env=env | {STOP_SAID: "1"}, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        while True:  # DVC ends at once; the stage it started (same group) after its checkpoint
            try:
                os.killpg(proc.pid, 0)
                proc.poll()  # reap DVC, so that only living processes keep the group
                time.sleep(0.05)
            except ProcessLookupError:
                break
            except KeyboardInterrupt:
                continue  # a second Ctrl-C: still waiting for the checkpoint
        raise


def _dvc(project: Path, env: dict, *args: str) -> None:
    """``dvc ARGS`` in the copy (:func:`_child`); a failure names the command to run again."""
    from pipeline import PipelineError

    code = _child(["dvc", *args], project, env)
    if code:
        raise PipelineError(
            f"`dvc {' '.join(args)}` in {project} failed (above); fix it and run the same command again"
        )


def _rates(project: Path, params: dict, meta: dict, latent: int):
    """Time a few steps of each model and the feature network here (:class:`plan.Rates`)."""
    import torch

    from pipeline.balance import build_balance
    from pipeline.config.choices import feature_space
    from pipeline.evaluation.features import build_feature_space
    from pipeline.hardware.device import Speed
    from pipeline.hardware.threads import set_threads
    from pipeline.models import build_stage1, build_stage2
    from pipeline.reports.plan import Rates
    from pipeline.training.loop import Settings, as_input, fit

    images = torch.load(project / "data" / "prepared" / "train.pt", weights_only=True)["images"]
    test_images = torch.load(project / "data" / "prepared" / "test.pt", weights_only=True)["images"]
    cpu = torch.device("cpu")
    set_threads(params["threads"])  # as the runs will

    def step_seconds(model, data, cfg, images_input: bool) -> float:
        data = data[: cfg["batch_size"] * 6]
        seconds = []
        speed = Speed.resolve(cfg["precision"], False, cpu, images=images_input)
        fit(
            model,
            build_balance(cfg["balance"]),
            lambda epoch: data,
            Settings(epochs=2, batch_size=cfg["batch_size"], lr=cfg["lr"], desc="timing", speed=speed),
            on_epoch=lambda row, timing, latent: seconds.append(timing["epoch_seconds"]),
        )
        return seconds[-1] / -(-len(data) // cfg["batch_size"])

    train = params["train"] | {"latent_dim": latent}
    vae = build_stage1(train, images.shape[1], images.shape[-1])
    s1 = step_seconds(vae, images, train, True)
    s2 = step_seconds(build_stage2(params["stage2"], latent), torch.randn(len(images), latent), params["stage2"], False)
    with torch.no_grad():
        vae.eval()
        x = as_input(test_images[:64])
        vae(x[:2])  # warm-up
        t0 = time.perf_counter()
        vae(x)
        forward = (time.perf_counter() - t0) / len(x)
    space = build_feature_space(
        feature_space(params["reference"]["features"], meta.get("num_classes", 0) >= 2),
        classifier_path=project / "models" / "classifier.pt",
        inception_weights=params["reference"].get("inception_weights"),
        device=cpu,
    )
    from pipeline.evaluation.features import fidelity_metrics, statistics

    dim = space.extract(test_images[:2]).shape[1]
    n = min(len(test_images), params["evaluate"]["num_samples"] or len(test_images))
    real, fake = torch.randn(len(test_images), dim, dtype=torch.float64), torch.randn(n, dim, dtype=torch.float64)
    t0 = time.perf_counter()
    fidelity_metrics(fake, real, statistics(real))  # its time does not depend on the values
    return Rates(s1, s2, space.throughput(test_images[:64]), forward, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
