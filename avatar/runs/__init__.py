"""The run directory of `avatar fit`: its settings, records and checkpoints, and the fitted model rebuilt from them."""
