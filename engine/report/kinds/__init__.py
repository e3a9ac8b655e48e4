"""One module per comparison kind, each with `table(config, comp, runs_dir) -> Table`;
the registry (engine/core/registry.py COMPARE_KINDS) names them."""
