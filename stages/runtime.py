"""Running a stage: threads, seeds and device; reading its input checkpoints."""

import textwrap
from pathlib import Path

import click
import torch

from pipeline import PipelineError
from pipeline.hardware.device import pick_device
from pipeline.hardware.threads import Adaptive, set_threads
from pipeline.hardware.timing import timed
from pipeline.seeding import seed_everything


def setup(seed: int, threads: int | str) -> tuple[torch.device, Adaptive | None]:
    """Threads (``threads`` from params.yaml: :mod:`pipeline.hardware.threads`), seeds and device
    for a stage (this rank's, under torchrun); prints them. Returns the device and, for
    ``threads: adaptive``, what to tick between steps."""
    from pipeline.training import distributed

    adaptive = set_threads(threads)
    device = distributed.init(pick_device())
    seed_everything(seed, device)
    rank, size = distributed.world()
    count = torch.get_num_threads()
    click.echo(
        f"device: {device} ({count} CPU thread{'s' if count > 1 else ''}, threads: {threads})"
        + (f", rank {rank} of {size}" if size > 1 else "")
    )
    return device, adaptive


@timed("io")
def load_checkpoint(path: Path, what: str) -> dict:
    """A torch file another stage wrote (``what``, for the messages): one line naming the
    file and the fix when it is missing or unreadable (truncated, corrupt, not a torch file)."""
    from stages.layout import producer

    stage = producer(Path(path))
    if not Path(path).is_file():
        raise PipelineError(
            f"{what} not found at {path}: run the stages before this one first "
            f"(`dvc repro{' ' + stage if stage else ''}`)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, OSError, pickle and zip errors
        reason = textwrap.shorten(" ".join(str(e).split()), 160, placeholder=" ...") or type(e).__name__
        fix = f"`dvc checkout --force {path}` restores it from the DVC cache, or `dvc repro -f {stage}` makes it again"
        raise PipelineError(
            f"{path} is not a readable {what} file (truncated or corrupt? {reason}): "
            f"{fix if stage else 'write it again'}"
        ) from None


SIGNIFICANT = 6  # digits of a float in a metrics file: the precision the metrics support


def significant(metrics: dict) -> dict:
    """Floats rounded to SIGNIFICANT digits (FID 2.8017517354862775 -> 2.80175): noise in the
    last bits of a computation (a BLAS kernel's summation order) never shows as a change."""
    return {k: float(f"{v:.{SIGNIFICANT}g}") if isinstance(v, float) else v for k, v in metrics.items()}


def write_metrics(name: str, metrics: dict, headline) -> dict:
    """metrics/<name>.json: the metrics whose key ``headline(key)`` accepts (what ``dvc exp
    show`` and ``dvc metrics diff`` show); metrics/all/<name>.json: every metric; floats to
    SIGNIFICANT digits. Returns the headline ones, as written."""
    from pipeline.files import write_json
    from stages.layout import METRICS

    metrics = significant(metrics)
    top = {k: v for k, v in metrics.items() if headline(k)}
    write_json(metrics, METRICS / "all" / f"{name}.json")
    write_json(top, METRICS / f"{name}.json")
    return top


def load_prepared(split: str):
    """data/prepared/<split>.pt (``train``, ``val`` or ``test``) as a :class:`pipeline.data.Split`."""
    from pipeline.data import Split
    from stages.layout import PREPARED

    d = load_checkpoint(PREPARED / f"{split}.pt", f"prepared {split} images")
    return Split(d["images"], d["labels"])


def drop_checkpoint(stage: str) -> None:
    """Remove the finished training of ``stage``, an earlier stage, kept for a rerun of it
    (:class:`stages.training.StageCheckpoint`): a later stage starting means DVC has recorded it."""
    from pipeline.training import distributed
    from stages.layout import CHECKPOINTS

    if distributed.is_main():
        (CHECKPOINTS / f"{stage}.pt").unlink(missing_ok=True)
        if CHECKPOINTS.parent.name == "exps" and CHECKPOINTS.is_dir() and not any(CHECKPOINTS.iterdir()):
            CHECKPOINTS.rmdir()  # an experiment's folder (stages.layout), left empty
