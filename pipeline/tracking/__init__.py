"""MLflow: which store, the run tree, a stage's run, and logged and registered models."""
