"""Supernet training: optimiser and schedule, path samplers, distributed helpers, the training loop."""
