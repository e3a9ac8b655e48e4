"""kind = "forecast": per run, the forecast made at 50% of it against the outcome."""
from __future__ import annotations

from pathlib import Path

from engine.core.table import INT, PCT, TEXT, Table
from engine.report.declared import latest_at_declared
from engine.report.optimus import num
from engine.report.rows import point_runs


def table(config, comp, runs_dir: Path) -> Table:
    """kind = "forecast": per run, the forecast made at 50% of it against the outcome."""
    entries = [(e, latest_at_declared(config, runs_dir, e)) for e in comp.experiments]
    for sweep in comp.sweeps:
        by_point = point_runs(runs_dir, sweep)
        entries += [(f"{sweep} {label}",
                     next((r for r in by_point.get(label, []) if r.raw_state == "done"), None))
                    for label, _, _ in config.sweeps[sweep].points()]
    t = Table(comp.title, [("Run of", TEXT), ("Epochs", INT), ("b0", TEXT), ("b1", TEXT),
                           ("b2", TEXT), ("Fit err", PCT), ("Loss @50%", TEXT),
                           ("Final loss", TEXT), ("Loss err", PCT), ("Target", PCT),
                           ("Epoch @50%", INT), ("Reached", INT), ("Epoch err", TEXT),
                           ("Run", TEXT)])
    errs, eps = [], []
    for label, run in entries:
        f = ((run.summary or {}).get("forecast") if run else None) or {}
        half = f.get("at_50") or {}
        if half.get("final_loss_error") is not None:
            errs.append(abs(half["final_loss_error"]))
        if half.get("epoch_error") is not None:
            eps.append(abs(half["epoch_error"]))
        t.rows.append([label, (run.summary or {}).get("epochs") if run else None,
                       num(f.get("b0")), num(f.get("b1")), num(f.get("b2")),
                       f.get("rel_err"), num(half.get("final_loss")),
                       num(f.get("actual_final_loss")), half.get("final_loss_error"),
                       (f.get("target") or {}).get("value"), half.get("eta_epoch"),
                       f.get("actual_epoch_to_target"),
                       None if half.get("epoch_error") is None
                       else f"{half['epoch_error']:+d}",
                       run.run_id if run else "no successful run"])
    t.notes.append("Loss @50%: the last epoch's mean training loss as the forecast made "
                   "after half the epochs predicted it; Final loss: what it was. Epoch "
                   "@50%: the epoch that forecast gave for the target accuracy; Reached: "
                   "the first epoch whose test accuracy did. Fit err: the whole run's fit.")
    if errs:
        t.notes.append(f"Over {len(errs)} run(s): mean |loss error| {100 * sum(errs) / len(errs):.1f}%"
                       + (f", mean |epoch error| {sum(eps) / len(eps):.1f}" if eps else "") + ".")
    return t
