"""The Optimus study's tables, plot and files (engine/perf/optimus.py computes it)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.core import rundir as rd
from engine.core.table import INT, PCT, SECS, TEXT, Table, duration
from engine.perf.optimus import PS, WORKERS, Study, to_json
from engine.report.export import export_table, pyplot, save_figure


def num(v) -> str | None:
    return None if v is None else f"{v:.4g}"


def fits_table(st: Study) -> Table:
    t = Table(f"Optimus loss model per run: sweep {st.sweep}",
              [("Run of", TEXT), ("Depth", INT), ("GPU", TEXT), ("b0", TEXT), ("b1", TEXT),
               ("b2", TEXT), ("Fit err", PCT), ("Steps", INT), ("Role", TEXT), ("Run", TEXT)])
    for f in st.fits:
        t.rows.append([f.model, f.depth, f.gpu, num(f.fit.b0), num(f.fit.b1),
                       num(f.fit.b2), f.fit.rel_err, f.fit.last_step,
                       "held out" if f is st.holdout else "regression", f.run_id])
    p = st.predicted
    t.rows.append([f"{st.holdout.model} predicted", st.holdout.depth, st.holdout.gpu,
                   num(p.b0), num(p.b1), num(p.b2), st.curve_error, None,
                   "from the regression", "-"])
    for d, q in st.depths.items():
        t.rows.append([f"depth {d} predicted", d, st.holdout.gpu, num(q.b0), num(q.b1),
                       num(q.b2), None, None, "from the regression", "-"])
    t.notes.append("l(k) = 1/(b0 k + b1) + b2, k the step; Fit err: mean |fit - loss| / "
                   "loss over the run's step records (for the predicted row: the "
                   "regression's curve against the held-out run's measured loss).")
    t.notes += ["Regression: " + line for line in st.regression.describe()]
    t.notes.append(_epochs_note(st))
    return t


def _epochs_note(st: Study) -> str:
    ep = (lambda e: f"epoch {e}" if e is not None else "never")
    how = "extrapolated" if st.extrapolated else "interpolated"
    loss = f"{st.target_loss:.4g}" if st.target_loss is not None else "unknown"
    return (f"Target {100 * st.target:g}% test accuracy = training loss {loss} ({how} from "
            f"the regression runs' epochs): predicted curve {ep(st.predicted_epoch)}, the "
            f"held-out run's own fit {ep(st.own_epoch)}, measured {ep(st.actual_epoch)} "
            f"(of {len(st.holdout.epochs)}).")


def time_table(st: Study) -> Table:
    t = Table(f"Time to {100 * st.target:g}% for {st.holdout.model} against workers "
              "(Optimus speed model)",
              [("Workers", INT)] + [(f"{p} PS", SECS) for p in PS])
    for i, w in enumerate(WORKERS):
        t.rows.append([w] + [st.times[p][i][1] if st.times else None for p in PS])
    t.notes.append(f"{st.predicted_epoch or '-'} predicted epochs x "
                   f"{st.holdout.steps_per_epoch} steps of global batch {st.speed.batch}; "
                   "seconds per step = theta0 M/w + theta1 + theta2 w/p + theta3 w + "
                   "theta4 p with theta = (" + ", ".join(f"{v:.3g}" for v in st.speed.theta)
                   + ") s.")
    t.notes.append("Thetas not from the paper (it prints none): " + st.speed.source + ".")
    return t


def study_table(st: Study) -> Table:
    """One table for the app's Compare view: the fits, and the timing as notes."""
    t = fits_table(st)
    if st.times:
        best = {p: min(st.times[p], key=lambda r: r[1]) for p in PS}
        t.notes.append("Time to target: " + "; ".join(
            f"{p} PS fastest with {w} workers ({duration(s)})" for p, (w, s) in best.items())
            + " (the plot: time against workers).")
    t.notes.append("Thetas not from the paper: " + st.speed.source + ".")
    t.plot = ("workers", {f"{p} PS": st.times.get(p, []) for p in PS},
              f"time to {100 * st.target:g}%, s")
    return t


def plot_study(st: Study, path: Path) -> Path:
    """Left: measured and predicted loss of the held-out run, with the regression runs'
    fits; right: time to target against workers for 2 and 4 parameter servers."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    h = st.holdout
    ax.plot(h.steps, h.losses, color="0.75", lw=0.8, label=f"{h.model} measured")
    ks = np.linspace(max(1, min(h.steps)), max(h.steps), 300)
    ax.plot(ks, h.fit.loss_at(ks), color="C0", label=f"{h.model} own fit")
    err = f" ({100 * st.curve_error:.1f}% error)" if st.curve_error is not None else ""
    ax.plot(ks, st.predicted.loss_at(ks), "--", color="C3",
            label=f"{h.model} predicted from depth{err}")
    for i, f in enumerate(x for x in st.fits if x is not h):
        kf = np.linspace(max(1, min(f.steps)), max(f.steps), 200)
        ax.plot(kf, f.fit.loss_at(kf), lw=0.8, color=f"C{(i + 4) % 10}", alpha=0.8,
                label=f"{f.model} fit")
    for d, q in st.depths.items():
        ax.plot(ks, q.loss_at(ks), ":", color="C2", label=f"depth {d} predicted")
    if st.target_loss is not None:
        ax.axhline(st.target_loss, color="k", lw=0.6, ls=":",
                   label=f"loss for {100 * st.target:g}%")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"Optimus loss model: {h.model} held out")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    for p, pts in st.times.items():
        bx.plot([w for w, _ in pts], [s / 3600 for _, s in pts], marker="o", label=f"{p} PS")
    bx.set_xscale("log", base=2)
    bx.set_xticks(WORKERS, [str(w) for w in WORKERS])
    bx.set_xlabel("workers")
    bx.set_ylabel(f"hours to {100 * st.target:g}% test accuracy")
    bx.set_title(f"Time to accuracy, {st.predicted_epoch or '?'} predicted epochs")
    bx.grid(alpha=0.3, which="both")
    if bx.lines:
        bx.legend()
    return save_figure(fig, path, f"Optimus study of sweep {st.sweep}")


def export_study(st: Study, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    stem = f"optimus-{st.sweep}"
    paths = export_table(fits_table(st), out_dir, stem)
    paths += export_table(time_table(st), out_dir, f"{stem}-time")
    rd.atomic_write_text(out_dir / f"{stem}.json", json.dumps(rd.clean(to_json(st)),
                                                                indent=2) + "\n")
    paths.append(out_dir / f"{stem}.json")
    paths.append(plot_study(st, out_dir / f"{stem}.png"))
    return paths
