"""Two-stage balanced VAE: the library behind the DVC stages.

Modules, one job each:
    params      read params.yaml, flatten it, hash a configuration
    schema      what params.yaml may hold: keys, types, ranges, combinations
    choices     the names params may choose from (no torch import: checked first)
    data        load datasets as uint8 tensors, split, resize
    models      the stage-1 VAEs (ours and the reference code's) and the stage-2 dense VAE
    balance     reconstruction/KL balancing strategies (running gamma, ...)
    train       the training loop shared by both stages
    adam        the optimiser (torch.optim.Adam's update, without its compiler import)
    speed       device, CPU threads (by step size and DVC queue share), bf16, compile, kernels fingerprint
    memory      will it fit: memory estimates checked before the work
    checkpoint  resumable training state, saved atomically and found again
    classifier  the small domain classifier whose features give "domain FID"
    features    feature spaces (domain, inception) and Frechet distance
    protocol    evaluation protocols: clean, or the references' preprocessing
    likelihood  test-set ELBO and IWAE bounds in nats and bits/dim
    sampling    REC, GEN-1 and GEN-2 images
    store       MLflow: which store (local sqlite or a server), whether it answers
    runs        MLflow: one parent run per configuration, one child run per stage
    tracking    MLflow: a stage's run, logging that never costs the training
    registry    MLflow: the generator's versions, the candidate and champion aliases
    mlflow_calls  MLflow: the calls of a stage's run, made in its tracking process
    worker      a helper process that runs calls in order (the tracking process)
    timing      where a stage's time goes (work, start-up, tracking, checkpoints, ...)
    utils       seeding, devices, atomic file writes, image grids
"""


class PipelineError(Exception):
    """A problem the user can fix (bad params, missing files, no weights): printed without a traceback."""


class Diverged(PipelineError):
    """The training loss became NaN or infinite."""


class DiskFull(PipelineError):
    """An output could not be written: its file system is full."""
