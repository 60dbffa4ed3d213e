"""Training both stages: the loop, checkpoints, diagnostics, DDP."""
