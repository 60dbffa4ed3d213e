"""`bvae`: every stage as a subcommand (DVC calls the same commands via `python -m stages.<name>`)."""

from pathlib import Path

import click

from stages import evaluate, prepare, reference, train_stage2, train_vae
from stages.common import stage


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Two-stage balanced VAE pipeline (Asperti & Trentin 2020; Dai & Wipf 2019).

    Normally run through DVC (`dvc repro`), which calls these stages in order and
    skips the ones whose inputs did not change. Each reads its section of
    params.yaml.
    """


for module in (prepare, reference, train_vae, train_stage2, evaluate):
    main.add_command(module.main)


@main.command()
@click.option("--experiment", envvar="MLFLOW_EXPERIMENT_NAME", default="balanced-vae", show_default=True,
              help="MLflow experiment to read.")
@click.option("--filter", "filter_string", default="",
              help="Extra MLflow filter on the parent runs, e.g. \"params.`prepare.dataset` = 'mnist'\".")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/compare"),
              show_default=True, help="Folder for table.md, compare.png and curves.png.")
@stage
def compare(experiment, filter_string, out_dir):
    """Compare finished pipeline runs side by side.

    One row per configuration (MLflow parent run): strategy, REC / GEN-1 / GEN-2
    FID, final beta_eff, active units, the KL's share of the encoder gradient and
    the training wall time. Writes a markdown table and two figures (FIDs per run;
    training curves of MSE, KL term, gamma and beta_eff) and prints the table.
    Reads MLFLOW_TRACKING_URI, or the project's mlflow.db.
    """
    from mlflow import MlflowClient

    from pipeline import report
    from pipeline.tracking import check_reachable, tracking_uri
    from pipeline.utils import atomic_path

    check_reachable(tracking_uri())
    rows = report.fetch(MlflowClient(tracking_uri()), experiment, filter_string)
    table = report.markdown_table(rows)
    with atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(table)
    paths = report.figures(rows, out_dir)
    click.echo(table)
    click.echo(f"wrote {out_dir / 'table.md'}, " + ", ".join(str(p) for p in paths))

if __name__ == "__main__":
    main()
