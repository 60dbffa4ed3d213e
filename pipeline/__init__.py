"""Two-stage balanced VAE: the library behind the DVC stages.

Folders and modules, one job each:
    config/       params.yaml
        params        read it, flatten it, hash a configuration
        schema        what it may hold: keys, types, ranges, combinations
        choices       the names it may choose from (no torch import: checked first)
        sizing        ``train.latent_dim: auto``: the latent size from the data's size
    data/         datasets as uint8 tensors; one module per source, registered by name
        digits, mnist, cifar10, celeba, folder   the sources (mnist also reads fashion_mnist)
        splits        train/test sets and the seeded choice of images
        listing       which files of a folder are used, which cannot be and why (torch-free)
        decoding      image files decoded in a process pool, unreadable ones named
        transforms    resize, channels, the JPEG round trip
        download      torchvision downloads, unless offline
        hashing       hashes of prepared tensors and of raw files
    models/       the VAEs, one module per architecture, registered by name (``train.model.arch``)
        base          what they share: reparameterisation, encoder/decoder parameters
        conv, resnet, resnet_ref, infogan   stage 1 (ours, and the reference code's networks)
        dense         stage 2, on the latent codes
    balance/      reconstruction/KL balancing strategies, registered by name: base (the
                  interface), fixed, annealed, learned_gamma, running_gamma, sigma
    training/     training both stages
        loop          the training loop shared by both stages
        adam          the optimiser (torch.optim.Adam's update, without its compiler import)
        checkpoint    resumable training state, saved atomically and found again
        diagnostics   gradient norms, latent statistics, active units
        distributed   data-parallel training under torchrun
    hardware/     how a stage uses the machine
        device        device, bf16 autocast, channels_last, compile, kernels fingerprint
        threads       CPU threads: by step size, queue share and the free CPUs
        cpu_load      the CPUs other processes keep busy
        cpu_slots     at most one computing stage per CPU among a DVC queue's experiments
        memory        will it fit: memory estimates checked before the work
        timing        where a stage's time goes (work, start-up, tracking, checkpoints, ...)
    evaluation/   scoring the models
        classifier    the small domain classifier whose features give "domain FID"
        features      feature spaces (domain, inception) and Frechet distance
        sampling      REC, GEN-1 and GEN-2 images
        protocols/    evaluation protocols, registered by name: clean, dai_wipf, asperti (each
                      reference's REC, GEN-1, GEN-2 and preprocessing, step by step), base
        gmm           a Gaussian mixture on the latent codes
        likelihood    test-set ELBO and IWAE bounds in nats and bits/dim
    tracking/     MLflow
        store         which store (local sqlite or a server), whether it answers
        runs          one parent run per configuration, one child run per stage
        stage_run     a stage's run, logging that never costs the training
        mlflow_calls  the calls of a stage's run, made in its tracking process
        worker        a helper process that runs calls in order (the tracking process)
        registry      the generator's versions, the candidate and champion aliases
    reports/      comparing runs (`bvae compare`)
        compare       one row per configuration: tables and figures
        seed_stats    runs that differ only in their seeds: mean, std and n
        equivalence   a fixed KL weight as a decoder variance, per reconstruction loss
        results_page  the answer to "is scaling the KL sound?" as a page
        runs_file     the runs' numbers as CSV, so a page rebuilds without the store
        plan          the runs of that page (`bvae answer`) and the estimate of their time
        plots         figures (matplotlib, written as PNG)
    files         atomic output writes (a failed stage leaves none), JSON, CSV
    images        uint8 conversion, image grids, PNG files
    progress      progress bars for a terminal and for a log file
    seeding       seed Python, NumPy and torch
"""


class PipelineError(Exception):
    """A problem the user can fix (bad params, missing files, no weights): printed without a traceback."""


class Diverged(PipelineError):
    """The training loss became NaN or infinite."""


class DiskFull(PipelineError):
    """An output could not be written: its file system is full."""
