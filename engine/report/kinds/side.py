"""kind = "table": experiments side by side (parts 2-4): init, trained layers, accuracy."""
from __future__ import annotations

from pathlib import Path

from engine.core.config import Config
from engine.core.table import INT, PCT, RATE, SECS, TEXT, Table
from engine.report.rows import latest_rows


def table(config: Config, comp, runs_dir: Path) -> Table:
    return _table(comp.title, latest_rows(config, comp, runs_dir))


def _table(title: str, rows: list) -> Table:
    table = Table(title, [
        ("Experiment", TEXT), ("Init", TEXT), ("Trains", TEXT), ("Acc@best", PCT),
        ("Final acc", PCT), ("Best ep.", INT), ("Epochs", INT), ("Trainable", INT),
        ("Wall", SECS), ("img/s", RATE), ("Title", TEXT)])
    for e, run in rows:
        s = (run.summary if run else None) or {}
        table.runs.append([run.path] if run else [])
        table.rows.append([
            e.name, str(e.settings.init or "random"), ",".join(e.settings.train_layers),
            s.get("test_acc_at_best"), s.get("final_test_acc"), s.get("best_epoch"),
            s.get("epochs"), s.get("params_trainable"), s.get("wall_s"),
            s.get("median_images_per_s"), e.title])
    table.notes.append("Acc@best: test accuracy at the epoch of lowest test loss; "
                       "latest successful run of each experiment.")
    return table
