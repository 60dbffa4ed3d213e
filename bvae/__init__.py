"""The `bvae` command (`bvae --help`): every DVC stage as a subcommand, and the commands
around the pipeline: sample and interpolate (the trained generator), compare (runs side by
side and the answer page), answer (that page for a folder of images, in one command),
check and preset (params.yaml), ui (the MLflow UI on the project's store)."""
