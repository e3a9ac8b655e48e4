"""Training: execute a run (loop, evaluation, checkpoints, records), step, optimisers."""
