"""kind = "summary": the assignment summary, each experiment's metric expected against
measured."""
from __future__ import annotations

from pathlib import Path

from engine.core.config import Config
from engine.core.table import DPCT, INT, METRIC_NAMES, PCT, SECS, TEXT, Table
from engine.report.rows import latest_rows, measured, time_to


def table(config: Config, comp, runs_dir: Path) -> Table:
    return _table(comp.title, latest_rows(config, comp, runs_dir))


def _table(title: str, rows: list) -> Table:
    table = Table(title, [("Experiment", TEXT), ("Metric", TEXT), ("Expected", PCT),
                          ("Measured", PCT), ("Delta (points)", DPCT), ("Epochs", INT),
                          ("To expected", SECS), ("Wall", SECS), ("Run", TEXT), ("Title", TEXT)])
    for e, run in rows:
        s = run.summary if run else None
        got = measured(e, s)
        table.runs.append([run.path] if run else [])
        want = e.expect.value if e.expect else None
        table.rows.append([
            e.name, METRIC_NAMES[e.expect.metric if e.expect else "test_acc_at_best"], want,
            got, got - want if got is not None and want is not None else None,
            s.get("epochs") if s else None,
            time_to(run.path, want) if run and want is not None else None,
            s.get("wall_s") if s else None,
            run.run_id if run else "no successful run", e.title])
    table.notes.append("Measured: the latest successful run of each experiment at its "
                       "declared settings (one at other settings only when there is none, "
                       "marked). Delta: measured minus expected, in percentage points. "
                       "acc@best: test accuracy at the epoch of lowest test loss. "
                       "To expected: training and evaluation time until the test "
                       "accuracy first reached the expected figure.")
    return table
