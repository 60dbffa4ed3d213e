"""Scoring the models: feature spaces and FID, samplers, preprocessing protocols, the
Gaussian mixture, the domain classifier and the likelihood."""
