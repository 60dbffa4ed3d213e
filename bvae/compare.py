"""`bvae compare`: finished pipeline runs side by side, seeds aggregated, and the answer page."""

from pathlib import Path

import click

from stages.command import command


@click.command(name="compare")
@click.option(
    "--experiment",
    envvar="MLFLOW_EXPERIMENT_NAME",
    default="balanced-vae",
    show_default=True,
    help="MLflow experiment to read.",
)
@click.option(
    "--filter",
    "filter_string",
    default="",
    help="Extra MLflow filter on the parent runs, e.g. \"params.`prepare.dataset` = 'mnist'\".",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/compare"),
    show_default=True,
    help="Folder for table.md, variance.md, compare.png and curves.png.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the answer page (markdown) here, e.g. docs/results.md; it links the figures in --out.",
)
@click.option(
    "--runs",
    "runs_csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the runs from this runs.csv (and the curves.csv beside it), written by an earlier compare, "
    "instead of MLflow: the same tables, figures and page without the store.",
)
@click.option("--note", default="", help="A line for the report's set-up: the hardware, what else ran.")
@command
def main(experiment, filter_string, out_dir, report_path, runs_csv, note):
    """Compare finished pipeline runs side by side, seeds aggregated.

    Runs that differ only in their seeds (any `*.seed` param) are one configuration:
    every number is its mean ± std (and n). Per configuration: the FID of REC and of every
    sampler (the best sampler in bold), the test likelihood bound in bits/dim, stage 1's
    final gamma, beta_eff, active units and KL gradient share, the training wall time
    (table.md); the decoder variance its
    final KL weight implied against the one the test data support, and the fixed beta
    that would match it next to a summed, a mean-reduced squared error and BCE
    (variance.md); two figures with error bars (FIDs, bits/dim, beta_eff, KL share;
    training curves with a ±1 std band). With --report, also a markdown page that
    answers "is scaling the KL sound?" from these runs (what docs/results.md is); the
    same runs give the same bytes. Reads MLFLOW_TRACKING_URI, or the project's mlflow.db,
    and writes the runs' numbers to runs.csv and curves.csv in --out; --runs reads them
    back instead of the store (docs/results/runs.csv is the committed page's).
    """
    import os
    import shlex

    from mlflow import MlflowClient

    from pipeline.files import atomic_path
    from pipeline.reports import compare, figures, results_page, runs_file
    from pipeline.tracking.store import check_reachable, tracking_uri

    written = []
    if runs_csv:
        rows, experiment, filter_string = runs_file.read(runs_csv)
    else:
        check_reachable(tracking_uri())
        rows = compare.fetch(MlflowClient(tracking_uri()), experiment, filter_string)
        written += runs_file.write(rows, out_dir, experiment, filter_string)
    groups = compare.configurations(rows)
    table, variance = compare.markdown_table(groups), compare.variance_table(groups)
    for name, text in (("table.md", table), ("variance.md", variance)):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text)
    paths = figures.figures(groups, out_dir)
    click.echo(table + "\n" + variance)
    written += [out_dir / "table.md", out_dir / "variance.md", *paths]
    if report_path:
        tail = ["--out", str(out_dir), "--report", str(report_path)] + (["--note", note] if note else [])
        store = ["--experiment", experiment] + (["--filter", filter_string] if filter_string else [])
        commands = [
            shlex.join(["bvae", "compare", *store, *tail]),
            shlex.join(["bvae", "compare", "--runs", str(out_dir / "runs.csv"), *tail]),
        ]
        page = results_page.render(
            groups,
            rows,
            fig_dir=os.path.relpath(out_dir, report_path.parent),
            experiment=experiment,
            commands=commands,
            note=note,
        )
        with atomic_path(report_path) as tmp:
            tmp.write_text(page)
        written.append(report_path)
    click.echo("wrote " + ", ".join(str(p) for p in written))
