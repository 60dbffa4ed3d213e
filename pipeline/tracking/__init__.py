"""MLflow: which store, the run tree, a stage's run and its calls (made in a helper
process), and the model registry."""
