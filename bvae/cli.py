"""`bvae`: every stage as a subcommand (DVC calls the same commands via `python -m stages.<name>`),
and sample, interpolate, check and preset; compare, answer and ui in their own modules."""

from pathlib import Path

import click

from bvae import answer, compare, ui
from bvae.models import trained_models
from pipeline import PipelineError
from stages import evaluate, prepare, reference, train_stage2, train_vae
from stages.command import command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Two-stage balanced VAE pipeline (Asperti & Trentin 2020; Dai & Wipf 2019).

    Normally run through DVC (`dvc repro`), which calls these stages in order and
    skips the ones whose inputs did not change. Each reads its section of
    params.yaml.
    """


for module in (prepare, reference, train_vae, train_stage2, evaluate, compare, answer, ui):
    main.add_command(module.main)


MODEL_OPTION = click.option(
    "--model",
    "model_ref",
    metavar="REF",
    default=None,
    help="Models to use: models:/NAME@ALIAS (e.g. models:/balanced-vae-generator@champion), models:/NAME/VERSION, or "
    "an MLflow run id (a pipeline run or one of its stage runs). Default: the workspace's models/.",
)


@main.command()
@click.option(
    "--sampler",
    type=click.Choice(["gen1", "gen2", "gen2_noise", "gmm", "gen2_rescaled"]),
    default="gen2",
    show_default=True,
    help="gen1: z ~ N(0, I); gen2: through stage 2; gen2_noise: plus gamma_z noise; "
    "gmm: Gaussian mixture on the codes; gen2_rescaled: variance-law rescale of gen2.",
)
@click.option("-n", "--num", type=click.IntRange(1), default=1000, show_default=True, help="How many images.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the PNG files (000000.png, ...).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=500, show_default=True)
@MODEL_OPTION
@command
def sample(sampler, num, out_dir, seed, batch_size, model_ref):
    """Write N generated images as PNG files, from the trained models in models/.

    Any external FID tool can then score the folder (e.g. `fidelity --gpu 0 --fid
    --input1 <folder> --input2 <real images>`).
    """
    from pipeline.evaluation import sampling
    from pipeline.hardware.device import pick_device
    from pipeline.images import save_pngs

    vae, s2, stage2, gmm = trained_models(pick_device(), model_ref)
    kw = {"latent_dim": vae.latent_dim, "stage2": stage2, "gamma_z": s2["gamma"], "gmm": gmm, "batch_size": batch_size}
    z = sampling.latents("gen2" if sampler == "gen2_rescaled" else sampler, num, seed, **kw)
    if sampler == "gen2_rescaled":
        z = sampling.rescale_latents(z, s2["expected_std"])
    paths = save_pngs(sampling.decode(vae, z, batch_size), out_dir)
    click.echo(f"wrote {len(paths)} {sampler} images to {out_dir}/")


@main.command()
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("plots/interpolation.png"),
    show_default=True,
    help="PNG grid to write.",
)
@click.option("--pairs", type=click.IntRange(1), default=8, show_default=True, help="Rows: pairs of test images.")
@click.option("--steps", type=click.IntRange(2), default=10, show_default=True, help="Interpolation points per row.")
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses the test images.")
@MODEL_OPTION
@command
def interpolate(out_path, pairs, steps, seed, model_ref):
    """Latent interpolation grid: each row goes from one test image to another
    through the decoded linear interpolation of their stage-1 codes mu(x)."""
    import torch

    from pipeline.evaluation import sampling
    from pipeline.hardware.device import pick_device
    from pipeline.images import save_grid
    from stages.runtime import load_prepared

    vae = trained_models(pick_device(), model_ref)[0]
    test = load_prepared("test")
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[: 2 * pairs]
    if len(idx) < 2 * pairs:
        raise PipelineError(f"--pairs {pairs} needs {2 * pairs} test images, there are {len(test)}")
    images = sampling.interpolate(vae, test.images[idx[:pairs]], test.images[idx[pairs:]], steps)
    save_grid(images, out_path, nrow=steps + 2)
    click.echo(f"wrote {out_path}")


@main.command()
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("params.yaml"),
    show_default=True,
    help="Params file to check.",
)
@command
def check(params_path):
    """Check params.yaml without running anything: every key (as each stage does at its
    start), that `prepare.data_root` exists, and that DVC can hash everything in it (DVC
    hashes it before the prepare stage starts, and stops at a name that is not UTF-8, a
    symbolic link that loops or leads nowhere, or an unreadable file, with a message that
    names no file): each such entry is named with its fix; and every setting that scales
    memory (batch sizes against the training set, model sizes, samples per sampler,
    importance samples) against this machine's memory, for the data as prepare will make it
    (pipeline/hardware/sizes.py): a value that would not fit is named with the largest that
    does. `scripts/repro.sh` runs it before `dvc repro`."""
    from pipeline.config.params import load_params
    from pipeline.data.folder import image_extensions
    from pipeline.data.listing import dvc_cannot_hash, list_images

    params = load_params(params_path)
    root = Path(params["prepare"]["data_root"])
    if not root.exists():
        raise PipelineError(
            f"prepare.data_root: {str(root)!r} does not exist; DVC needs it as the prepare stage's "
            "dependency (for digits too: the default data/raw holds a README): create it or fix the "
            "path"
        )
    unusable = dvc_cannot_hash(list_images(root, set())[2])
    if unusable:
        listed = "; ".join(f"{path}: {reason}" for path, reason in unusable[:10])
        more = f"; and {len(unusable) - 10} more" if len(unusable) > 10 else ""
        raise PipelineError(
            f"prepare.data_root: DVC hashes everything in {root} before the prepare stage runs and cannot hash "
            f"{len(unusable)} entr{'y' if len(unusable) == 1 else 'ies'}: {listed}{more}. Fix them or move them "
            f"out of {root} (`python -m stages.prepare` run directly skips and names them)"
        )
    folder = params["prepare"]["dataset"] == "folder"
    _check_sizes(params, len(list_images(root, set(image_extensions()))[0]) if folder else 0)
    click.echo(f"{params_path}: ok")


def _check_sizes(params: dict, folder_images: int) -> None:
    """The sizes of every stage (:func:`stages.sizes.check_params`) for the data as
    prepare will make it: labelled as the dataset is (a folder: with class subfolders)."""
    from pipeline.data import expected_shape
    from pipeline.hardware.device import pick_device
    from stages.sizes import check_params

    cfg = params["prepare"]
    shape = expected_shape(cfg, folder_images)
    labelled = cfg["dataset"] != "celeba" and (cfg["dataset"] != "folder" or _has_classes(Path(cfg["data_root"])))
    for line in check_params(params, shape, pick_device(), ("reference", "train", "stage2", "evaluate"), labelled):
        click.echo(f"note: {line}")


def _has_classes(root: Path) -> bool:
    return sum(p.is_dir() for p in root.iterdir()) >= 2


PRESETS = Path(__file__).resolve().parents[1] / "presets"


def _preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


@main.command()
@click.argument("name", required=False)
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("params.yaml"),
    show_default=True,
    help="Params file to change (its comments and layout are kept).",
)
@click.option("--list", "list_only", is_flag=True, help="List the presets, each with its description.")
@command
def preset(name, params_path, list_only):
    """Apply the preset NAME (presets/NAME.yaml) to params.yaml.

    Presets set the reference code's set-ups: `dai_wipf_mnist` and `dai_wipf_fashion_mnist`
    (Dai & Wipf's two-stage VAE reproduced: the InfoGAN-style network, batch 64, learned gamma
    in both stages), `mnist` and `fashion_mnist` (the same set-up with running gamma: our
    method under their protocol), `cifar10` and `celeba` (Asperti & Trentin's: the reference
    ResNet, batch 100, running gamma): the
    architecture, epochs and learning-rate schedule of both stages, data preparation and
    that paper's evaluation protocol (dai_wipf or asperti); and `quick` (MNIST on a CPU in minutes). Only the keys the preset names change;
    the changes are printed. Then `dvc repro` (or `dvc exp run`) runs it. Undo with
    `git checkout params.yaml`.
    """
    import yaml

    from pipeline.config.params import apply_overlay

    if list_only or name is None:
        import itertools
        import textwrap

        for n in _preset_names():
            lines = (PRESETS / f"{n}.yaml").read_text().splitlines()
            text = " ".join(line.lstrip("# ") for line in itertools.takewhile(lambda line: line.startswith("#"), lines))
            wrapped = textwrap.fill(text, 88, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False)
            click.echo(f"{n}\n{wrapped}\n")
        return
    if name not in _preset_names():
        raise PipelineError(f"unknown preset '{name}' (choose one of {', '.join(_preset_names())})")
    changes = apply_overlay(params_path, yaml.safe_load((PRESETS / f"{name}.yaml").read_text()))
    for key, old, new in changes:
        click.echo(f"{key}: {old} -> {new}")
    click.echo(f"applied preset {name} to {params_path} ({len(changes)} changes); run `dvc repro` next")


if __name__ == "__main__":
    main()
