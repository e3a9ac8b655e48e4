"""The Optimus study (seed 004, problem 4; MISSION E5), from a sweep's finished runs.

1. Each run's training loss per step fitted with l(k) = 1/(b0*k + b1) + b2
   (engine/forecast.py): one row of b's per run.
2. Each b regressed on depth (the number in the model's name: resnet20 -> 20), plus one
   offset per GPU type when the runs come from several (status/summary "gpu").
3. The held-out run's curve predicted from the regression alone and compared with its
   measured loss (mean relative error, %), and the epochs the predicted curve needs to
   reach the target accuracy (a loss, through the other runs' epochs) against the epoch
   the held-out run really reached it.
4. Time to that accuracy against the number of workers, for 2 and 4 parameter servers,
   under the Optimus speed model (Peng et al., EuroSys 2018, Eq. 4) for synchronous
   training: seconds per step = theta0*M/w + theta1 + theta2*w/p + theta3*w + theta4*p.
   The paper fits the thetas per job and prints none, so they are not the paper's:
   theta0 and theta1 come from step times measured here (the held-out run's own seconds
   per step at its batch M, or `engine throughput`'s JSON at several batch sizes, fitted
   by non-negative least squares); theta2..theta4, the communication terms, cannot be
   measured on one machine and come from the model's size and an assumed link
   (theta2 = 2 * parameter bytes / bandwidth, theta3 = theta4 = a per-connection
   latency), both named in every output.

Also the "forecast" comparison: per run, what the forecast said at 50% against what
happened. No torch here.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import forecast as fc
from . import rundir as rd
from .analysis import INT, PCT, SECS, TEXT, Table
from .errors import ConfigError, RunError
from .settings import suggest

PS = (2, 4)
WORKERS = (1, 2, 4, 8, 16, 32)
BANDWIDTH_GBPS = 10.0  # assumed parameter-server link
LATENCY_MS = 0.5  # assumed per-connection overhead per step


def _num(v) -> str | None:
    return None if v is None else f"{v:.4g}"


def depth_of(model: str) -> int | None:
    """The number of layers a model's name says (resnet20 -> 20, resnet18_cifar -> 18)."""
    m = re.search(r"(\d+)", model)
    return int(m.group(1)) if m else None


@dataclass
class RunFit:
    """One finished run of the sweep and its loss-model fit."""

    label: str
    run_id: str
    path: Path
    model: str
    depth: int
    gpu: str
    batch: int
    steps_per_epoch: int
    epochs: list  # epoch records
    steps: list
    losses: list
    fit: fc.LossFit
    step_s: float | None  # training seconds per step (batch / median images/s)
    params: int | None


def sweep_fits(config, sweep: str, runs_dir: Path) -> list[RunFit]:
    """Every point's latest successful run, fitted (points without one are left out)."""
    if sweep not in config.sweeps:
        raise ConfigError(f"no sweep named {sweep!r}{suggest(sweep, config.sweeps)} "
                          f"(declared: {', '.join(config.sweeps) or 'none'})", str(config.path))
    by_point = rd.runs_by_point(runs_dir, sweep)
    out = []
    for label, _, _ in config.sweeps[sweep].points():
        run = next((r for r in by_point.get(label, []) if r.raw_state == "done"), None)
        if run is None:
            continue
        settings = rd.read_config(run.path).get("settings", {})
        model = str(settings.get("model", ""))
        steps, losses, epochs = fc.records(run.path)
        fit = fc.fit_loss(steps, losses)
        depth = depth_of(model)
        if fit is None or depth is None:
            continue
        s = run.summary or {}
        batch = int(settings.get("batch_size") or 0)
        rate = s.get("median_images_per_s")
        out.append(RunFit(label, run.run_id, run.path, model, depth,
                          s.get("gpu") or run.status.get("gpu") or "CPU", batch,
                          int(run.status.get("steps") or 0), epochs, steps, losses, fit,
                          batch / rate if rate and batch else None, s.get("params_total")))
    return out


@dataclass
class Regression:
    """Each b as a linear function of depth (and a per-GPU offset)."""

    gpus: list
    coef: dict  # "b0" -> [intercept, per layer, offsets of gpus[1:]...]
    r2: dict

    def features(self, depth: float, gpu: str) -> np.ndarray:
        return np.array([1.0, float(depth)] + [1.0 if gpu == g else 0.0
                                               for g in self.gpus[1:]])

    def predict(self, depth: float, gpu: str) -> fc.LossFit:
        x = self.features(depth, gpu)
        b = [max(0.0, float(x @ self.coef[k])) for k in ("b0", "b1", "b2")]
        return fc.LossFit(*b, 0.0, 0.0, 0, 0)

    def describe(self) -> list[str]:
        out = []
        for k in ("b0", "b1", "b2"):
            c = self.coef[k]
            gpu = "".join(f" {v:+.4g} on {g}" for g, v in zip(self.gpus[1:], c[2:]))
            out.append(f"{k} = {c[0]:.4g} {c[1]:+.4g} x depth{gpu} (R2 {self.r2[k]:.3f})")
        return out


def regress(fits: list[RunFit]) -> Regression:
    depths = {f.depth for f in fits}
    if len(depths) < 2:
        raise RunError(f"the regression on depth needs finished runs at two depths at "
                       f"least besides the held-out one; have {len(fits)} run(s) at depth "
                       f"{', '.join(map(str, sorted(depths))) or 'none'}")
    gpus = sorted({f.gpu for f in fits})
    reg = Regression(gpus, {}, {})
    x = np.array([reg.features(f.depth, f.gpu) for f in fits])
    for k in ("b0", "b1", "b2"):
        y = np.array([getattr(f.fit, k) for f in fits])
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        reg.coef[k] = coef
        total = float(np.sum((y - y.mean()) ** 2))
        reg.r2[k] = 1.0 - float(np.sum((x @ coef - y) ** 2)) / total if total > 0 else 1.0
    return reg


@dataclass
class SpeedModel:
    """Seconds per synchronous step with p parameter servers and w workers at global
    batch M (Optimus Eq. 4, inverted)."""

    theta: tuple
    batch: int
    source: str

    def step_s(self, p: int, w: int) -> float:
        t0, t1, t2, t3, t4 = self.theta
        return t0 * self.batch / w + t1 + t2 * w / p + t3 * w + t4 * p


def speed_model(step_s: float | None, batch: int, params: int | None,
                bandwidth_gbps: float = BANDWIDTH_GBPS, latency_ms: float = LATENCY_MS,
                measured: list | None = None) -> SpeedModel:
    """theta0, theta1 from step times measured here; theta2..theta4 from the parameter
    bytes and the assumed link (see the module's docstring)."""
    comm = 2 * 4 * (params or 0) / (bandwidth_gbps * 1e9 / 8)
    lat = latency_ms / 1000
    if measured and len({b for b, _ in measured}) >= 2:
        from scipy.optimize import nnls
        a = np.array([[b, 1.0] for b, _ in measured])
        (t0, t1), _ = nnls(a, np.array([t for _, t in measured]))
        source = (f"theta0, theta1 fitted to {len(measured)} measured step times "
                  f"(batch {', '.join(str(b) for b, _ in measured)})")
    elif step_s:
        t0, t1 = step_s / batch, 0.0
        source = (f"theta0 = the held-out run's {1000 * step_s:.1f} ms per step / batch "
                  f"{batch}, theta1 = 0")
    else:
        raise RunError("no step time to build the speed model from (the held-out run "
                       "has no images/s; pass --speed with engine throughput's JSON)")
    source += (f"; theta2 = 2 x {4 * (params or 0) / 1e6:.2f} MB of parameters / "
               f"{bandwidth_gbps:g} Gb/s, theta3 = theta4 = {latency_ms:g} ms (assumed, "
               "not measured)")
    return SpeedModel((float(t0), float(t1), comm, lat, lat), batch, source)


def read_speed_file(path: Path) -> list[tuple[int, float]]:
    """(batch, seconds per step) from `engine throughput`'s JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = [(int(r["batch"]), r["step_ms"] / 1000) for r in data["rows"]
                if r.get("step_ms")]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: not engine throughput's JSON ({exc})") from None
    if not rows:
        raise RunError(f"{path}: no measured step times in it")
    return rows


@dataclass
class Study:
    sweep: str
    fits: list
    holdout: RunFit
    regression: Regression
    predicted: fc.LossFit
    target: float
    target_loss: float | None
    extrapolated: bool
    predicted_epoch: int | None
    own_epoch: int | None  # from the held-out run's own fit, for comparison
    actual_epoch: int | None
    curve_error: float | None
    own_error: float | None
    speed: SpeedModel
    times: dict  # p -> [(w, seconds)]
    depths: dict = field(default_factory=dict)  # extra depth -> predicted LossFit


def _epoch_for(fit: fc.LossFit, loss: float | None, steps_per_epoch: int) -> int | None:
    k = fit.step_for(loss) if loss is not None else None
    return None if k is None else max(1, math.ceil(k / steps_per_epoch + 0.5))


def _pick_holdout(fits: list[RunFit], holdout: str | None) -> RunFit:
    if holdout is None:
        return max(fits, key=lambda f: f.depth)
    got = [f for f in fits if holdout in (f.label, f.model, f.run_id)]
    if not got:
        names = [f.model for f in fits]
        raise RunError(f"--holdout {holdout!r}: no finished run of the sweep is that model "
                       f"or point{suggest(holdout, names)} (finished: {', '.join(names)})")
    return got[0]


def study(config, sweep: str, runs_dir: Path, holdout: str | None = None,
          target: float | None = None, depths=(), speed_file: Path | None = None,
          bandwidth_gbps: float = BANDWIDTH_GBPS, latency_ms: float = LATENCY_MS) -> Study:
    fits = sweep_fits(config, sweep, runs_dir)
    if not fits:
        raise RunError(f"sweep {sweep} has no finished run (python -m engine sweep {sweep})")
    held = _pick_holdout(fits, holdout)
    train = [f for f in fits if f is not held]
    reg = regress(train)
    if target is None:
        base = config.experiments[config.sweeps[sweep].bases[0]]
        if base.expect is None:
            raise ConfigError(f"sweep {sweep}'s base {base.name} has no expect: pass "
                              "--target ACCURACY", str(config.path))
        target = base.expect.value
    predicted = reg.predict(held.depth, held.gpu)
    pairs = [(m.get("train_loss"), m.get(fc.ACC_KEY)) for f in train for m in f.epochs]
    loss, extrapolated = fc.loss_for_accuracy(pairs, target)
    spe = held.steps_per_epoch
    pred_epoch = _epoch_for(predicted, loss, spe)
    measured = read_speed_file(speed_file) if speed_file else None
    speed = speed_model(held.step_s, held.batch, held.params, bandwidth_gbps, latency_ms,
                        measured)
    times = {}
    if pred_epoch is not None:
        steps = pred_epoch * spe
        times = {p: [(w, steps * speed.step_s(p, w)) for w in WORKERS] for p in PS}
    return Study(sweep, fits, held, reg, predicted, target, loss, extrapolated, pred_epoch,
                 _epoch_for(held.fit, loss, spe), fc.first_epoch_at(held.epochs, target),
                 fc.curve_error(predicted, held.steps, held.losses), held.fit.rel_err,
                 speed, times, {d: reg.predict(d, held.gpu) for d in depths})


# ------------------------------------------------------------------ tables, plot, JSON
def fits_table(st: Study) -> Table:
    t = Table(f"Optimus loss model per run: sweep {st.sweep}",
              [("Run of", TEXT), ("Depth", INT), ("GPU", TEXT), ("b0", TEXT), ("b1", TEXT),
               ("b2", TEXT), ("Fit err", PCT), ("Steps", INT), ("Role", TEXT), ("Run", TEXT)])
    for f in st.fits:
        t.rows.append([f.model, f.depth, f.gpu, _num(f.fit.b0), _num(f.fit.b1),
                       _num(f.fit.b2), f.fit.rel_err, f.fit.last_step,
                       "held out" if f is st.holdout else "regression", f.run_id])
    p = st.predicted
    t.rows.append([f"{st.holdout.model} predicted", st.holdout.depth, st.holdout.gpu,
                   _num(p.b0), _num(p.b1), _num(p.b2), st.curve_error, None,
                   "from the regression", "-"])
    for d, q in st.depths.items():
        t.rows.append([f"depth {d} predicted", d, st.holdout.gpu, _num(q.b0), _num(q.b1),
                       _num(q.b2), None, None, "from the regression", "-"])
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
            f"{p} PS fastest with {w} workers ({_dur(s)})" for p, (w, s) in best.items())
            + " (the plot: time against workers).")
    t.notes.append("Thetas not from the paper: " + st.speed.source + ".")
    t.plot = ("workers", {f"{p} PS": st.times.get(p, []) for p in PS},
              f"time to {100 * st.target:g}%, s")
    return t


def _dur(s: float) -> str:
    from .analysis import duration
    return duration(s)


def plot_study(st: Study, path: Path) -> Path:
    """Left: measured and predicted loss of the held-out run, with the regression runs'
    fits; right: time to target against workers for 2 and 4 parameter servers."""
    from .export import pyplot, save_figure

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


def to_json(st: Study) -> dict:
    return {
        "sweep": st.sweep, "target": st.target, "target_loss": st.target_loss,
        "extrapolated": st.extrapolated,
        "runs": [{"label": f.label, "run_id": f.run_id, "model": f.model, "depth": f.depth,
                  "gpu": f.gpu, **f.fit.to_dict(), "role": "held out" if f is st.holdout
                  else "regression"} for f in st.fits],
        "regression": {"gpus": st.regression.gpus, "r2": st.regression.r2,
                       "coef": {k: [float(v) for v in c]
                                for k, c in st.regression.coef.items()}},
        "predicted": {"model": st.holdout.model, "depth": st.holdout.depth,
                      **{k: getattr(st.predicted, k) for k in ("b0", "b1", "b2")},
                      "curve_error": st.curve_error, "own_fit_error": st.own_error},
        "epochs_to_target": {"predicted": st.predicted_epoch, "own_fit": st.own_epoch,
                             "measured": st.actual_epoch},
        "depths": {str(d): {k: getattr(q, k) for k in ("b0", "b1", "b2")}
                   for d, q in st.depths.items()},
        "speed": {"theta": list(st.speed.theta), "batch": st.speed.batch,
                  "source": st.speed.source},
        "time_to_target_s": {str(p): [[w, s] for w, s in pts] for p, pts in st.times.items()},
    }


def export_study(st: Study, out_dir: Path) -> list[Path]:
    from .export import export_table

    out_dir = Path(out_dir)
    stem = f"optimus-{st.sweep}"
    paths = export_table(fits_table(st), out_dir, stem)
    paths += export_table(time_table(st), out_dir, f"{stem}-time")
    rd.atomic_write_text(out_dir / f"{stem}.json", json.dumps(rd.clean(to_json(st)),
                                                                indent=2) + "\n")
    paths.append(out_dir / f"{stem}.json")
    paths.append(plot_study(st, out_dir / f"{stem}.png"))
    return paths


# ------------------------------------------------------------------ compare kinds
def compare_study(config, comp, runs_dir: Path) -> Table:
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


def forecast_table(config, comp, runs_dir: Path) -> Table:
    """kind = "forecast": per run, the forecast made at 50% of it against the outcome."""
    entries = [(e, rd.latest_done(runs_dir, e)) for e in comp.experiments]
    for sweep in comp.sweeps:
        by_point = rd.runs_by_point(runs_dir, sweep)
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
                       _num(f.get("b0")), _num(f.get("b1")), _num(f.get("b2")),
                       f.get("rel_err"), _num(half.get("final_loss")),
                       _num(f.get("actual_final_loss")), half.get("final_loss_error"),
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
