"""kind = "optimus": the Optimus study of the comparison's sweep, in one table."""
from __future__ import annotations

from pathlib import Path

from engine.core.errors import RunError
from engine.core.table import TEXT, Table
from engine.perf.optimus import study
from engine.report.optimus import study_table


def table(config, comp, runs_dir: Path) -> Table:
    """kind = "optimus": the study of the comparison's sweep, in one table."""
    try:
        st = study(config, comp.sweeps[0], runs_dir, comp.holdout or None)
    except RunError as exc:
        t = Table(comp.title, [("Run of", TEXT), ("State", TEXT)])
        t.notes.append(f"Not yet: {exc}")
        return t
    t = study_table(st)
    t.title = comp.title
    return t
