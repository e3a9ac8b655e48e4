"""kind = "transfer": feature extractor against fine-tune at their learning rates, and
the winner picked by validation accuracy."""
from __future__ import annotations

from pathlib import Path

from engine.core.config import Config
from engine.core.registry import MODELS
from engine.core.settings import apply_overrides
from engine.core.table import INT, PCT, RATE, SECS, TEXT, Table, fmt
from engine.report.rows import latest_rows
from engine.report.rows import point_runs as runs_by_point


def table(config: Config, comp, runs_dir: Path) -> Table:
    return _transfer_table(config, comp, latest_rows(config, comp, runs_dir), runs_dir)


def approach(s, model_head: str) -> str:
    """What a transfer run trains: the new head only, every layer, or some."""
    if "all" in s.train_layers:
        return "fine-tune"
    if tuple(s.train_layers) == (model_head,):
        return "feature extractor"
    return "partial: " + ",".join(s.train_layers)


def _transfer_table(config: Config, comp, rows: list, runs_dir: Path) -> Table:
    """Feature extractor against fine-tune, each at its learning rates: the experiments'
    latest runs and the done points of the named sweeps, with the winner picked by
    validation accuracy (test accuracy where a run holds out no validation split)."""
    entries = [(e.name, e, e.settings, run) for e, run in rows]
    for name in comp.sweeps:
        by_point = runs_by_point(runs_dir, name)
        for label, base, overrides in config.sweeps[name].points():
            run = next((r for r in by_point.get(label, []) if r.raw_state == "done"), None)
            entries.append((f"{name} {label}", config.experiments[base],
                            apply_overrides(config.experiments[base].settings, overrides), run))
    table = Table(comp.title, [("Approach", TEXT), ("Run of", TEXT), ("lr", TEXT),
                               ("Val acc", PCT), ("Test acc", PCT), ("Best test", PCT),
                               ("Epochs", INT), ("Wall", SECS), ("img/s", RATE),
                               ("Seed", PCT), ("Seed wall", SECS), ("Run", TEXT)])
    scored = []
    for label, e, s, run in entries:
        summ = (run.summary if run else None) or {}
        ref = e.reference
        row = [approach(s, MODELS[s.model].head), label, f"{s.lr:g}",
               summ.get("val_acc_at_best"), summ.get("test_acc_at_best"),
               summ.get("best_test_acc"), summ.get("epochs"), summ.get("wall_s"),
               summ.get("median_images_per_s"), ref.value if ref else None,
               ref.wall_s if ref else None, run.run_id if run else "no successful run"]
        table.rows.append(row)
        table.runs.append([run.path] if run else [])
        if summ:
            scored.append(row)
    by_val = [r for r in scored if r[3] is not None]
    pick, metric = (by_val, 3) if by_val else (scored, 4)
    if pick:
        best = max(pick, key=lambda r: r[metric])
        table.notes.append(
            f"Winner: {best[0]} at lr {best[2]} ({best[1]}): "
            + (f"validation {fmt(best[3], PCT)}, " if best[3] is not None else "")
            + f"test {fmt(best[4], PCT)}; picked by "
            + ("validation accuracy (the test set reports, it does not choose)." if by_val
               else "test accuracy (no run held out a validation split)."))
    table.notes.append("Val acc and Test acc: at the epoch of lowest validation loss (test "
                       "loss without a validation split); Best test: the highest test "
                       "accuracy of any epoch, as the seed reports it. Seed: the published "
                       "figure and its wall time.")
    sources = sorted({e.reference.source for _, e, _, _ in entries if e.reference})
    if sources:
        table.notes.append("Seed: " + "; ".join(sources) + ".")
    return table
