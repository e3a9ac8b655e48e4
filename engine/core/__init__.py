"""Torch-free core: errors, registries, settings, experiments.toml, the run directory."""
