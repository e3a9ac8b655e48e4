"""kind = "models": the model zoo, parameters, peak GPU memory and epoch time."""
from __future__ import annotations

from pathlib import Path

from engine.core.config import Config
from engine.core.table import INT, PCT, RATE, SECS, TEXT, Table
from engine.report.rows import latest_rows


def table(config: Config, comp, runs_dir: Path) -> Table:
    return _table(comp.title, latest_rows(config, comp, runs_dir))


def _table(title: str, rows: list) -> Table:
    table = Table(title, [("Experiment", TEXT), ("Model", TEXT), ("Params", INT),
                          ("Trainable", INT), ("Batch", INT), ("GPU MiB", RATE),
                          ("Epoch time", SECS), ("Acc@best", PCT), ("img/s", RATE)])
    for e, run in rows:
        s = (run.summary if run else None) or {}
        epochs = s.get("epochs") or 0
        table.runs.append([run.path] if run else [])
        table.rows.append([e.name, e.settings.model, s.get("params_total"),
                           s.get("params_trainable"), e.settings.batch_size,
                           s.get("gpu_mem_peak_mb"), s["train_s"] / epochs if epochs else None,
                           s.get("test_acc_at_best"), s.get("median_images_per_s")])
    table.notes.append("GPU MiB: the training process's peak allocated memory at that "
                       "batch size (empty on CPU); latest successful run of each.")
    return table
