"""kind = "ssl": self-supervised methods side by side, with few-label fine-tuning and
the published references."""
from __future__ import annotations

from pathlib import Path

from engine.core.config import Config
from engine.core.table import INT, PCT, RATE, SECS, TEXT, Table
from engine.report.rows import latest_rows
from engine.report.rows import point_runs as runs_by_point


def table(config: Config, comp, runs_dir: Path) -> Table:
    return _ssl_table(config, comp, latest_rows(config, comp, runs_dir), runs_dir)


def _ssl_table(config: Config, comp, rows: list, runs_dir: Path) -> Table:
    """Self-supervised methods side by side: pretraining (epochs, wall time, images/s),
    the k-NN monitor and the linear probe on its features, fine-tuning with few labels
    (the points of the `finetune` sweep whose base starts from the method), and the
    published reference."""
    fractions, tuned = _finetunes(config, comp.finetune, runs_dir)
    table = Table(comp.title, [("Method", TEXT), ("Task", TEXT), ("Epochs", INT),
                               ("Wall", SECS), ("img/s", RATE), ("k-NN", PCT),
                               ("Linear", PCT)]
                  + [(f"{100 * f:g}% labels", PCT) for f in fractions]
                  + [("Reference", PCT), ("Run", TEXT)])
    for e, run in rows:
        s = (run.summary if run else None) or {}
        table.runs.append([run.path] if run else [])
        table.rows.append([e.name, e.settings.task, s.get("epochs"), s.get("wall_s"),
                           s.get("median_images_per_s"), s.get("best_knn_acc"),
                           s.get("linear_acc")]
                          + [tuned.get((e.name, f)) for f in fractions]
                          + [e.reference.value if e.reference else None,
                             run.run_id if run else "no successful run"])
    sources = sorted({e.reference.source for e, _ in rows if e.reference})
    table.notes.append("k-NN: best weighted k-NN test accuracy on the backbone's features "
                       "during pretraining; Linear: a linear probe on its frozen features; "
                       "N% labels: fine-tuned from it with that share of the train labels "
                       "(test accuracy at the epoch of lowest test loss).")
    if sources:
        table.notes.append("Reference: " + "; ".join(sources) + ".")
    return table


def _finetunes(config: Config, sweep_name: str, runs_dir: Path):
    """(label fractions in the sweep, {(method, fraction): test acc}) of its done points."""
    sweep = config.sweeps.get(sweep_name)
    if sweep is None:
        return [], {}
    by_point = runs_by_point(runs_dir, sweep_name)
    fractions, tuned = [], {}
    for label, base, overrides in sweep.points():
        s = config.experiments[base].settings
        frac = next((float(o.split("=", 1)[1]) for o in overrides
                     if o.startswith("label_fraction=")), s.label_fraction)
        if frac not in fractions:
            fractions.append(frac)
        done = next((r for r in by_point.get(label, []) if r.raw_state == "done"), None)
        if done and done.summary and config.experiments[base].needs:
            tuned[(config.experiments[base].needs, frac)] = done.summary["test_acc_at_best"]
    return sorted(fractions), tuned
