"""Reports: comparison tables, the runs overview, run diffs, Markdown/CSV/PNG export."""
