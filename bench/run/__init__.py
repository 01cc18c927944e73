"""One run: its configuration and recipe, the training loop, the schedules of phases, checkpoints and the record."""
