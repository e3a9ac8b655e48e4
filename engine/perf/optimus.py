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

Its tables, plot and files are engine/report/optimus.py's. No torch here.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.core import rundir as rd
from engine.core.errors import ConfigError, RunError
from engine.core.settings import suggest
from engine.perf import forecast as fc

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
