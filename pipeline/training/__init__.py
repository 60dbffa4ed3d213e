"""Training both stages: the loop, the optimiser, checkpoints, diagnostics, DDP."""
