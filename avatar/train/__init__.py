"""Fitting a talking head to a capture dataset: data preparation, losses, densification strategy, training
state, log and the loop (trainer)."""
