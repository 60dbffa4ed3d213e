"""`bvae`: every stage as a subcommand (DVC calls the same commands via `python -m stages.<name>`)."""

import click

from stages import evaluate, prepare, reference, train_stage2, train_vae


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Two-stage balanced VAE pipeline (Asperti & Trentin 2020; Dai & Wipf 2019).

    Normally run through DVC (`dvc repro`), which calls these stages in order and
    skips the ones whose inputs did not change. Each reads its section of
    params.yaml.
    """


for module in (prepare, reference, train_vae, train_stage2, evaluate):
    main.add_command(module.main)

if __name__ == "__main__":
    main()
