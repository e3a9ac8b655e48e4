"""Runs: creating runs, chains and sweep points; running, resuming, launching detached."""
