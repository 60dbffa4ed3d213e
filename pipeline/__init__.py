"""Two-stage balanced VAE: the library behind the DVC stages. docs/architecture.md maps
every module of it (one job each) and its layers."""


class PipelineError(Exception):
    """A problem the user can fix (bad params, missing files, no weights): printed without a traceback."""


class Diverged(PipelineError):
    """The training loss became NaN or infinite."""


class DiskFull(PipelineError):
    """An output could not be written: its file system is full."""
