"""The Optimus loss model (Peng et al., EuroSys 2018, Eq. 1) and a run's live forecast.

    l(k) = 1 / (b0 * k + b1) + b2,   b0, b1, b2 >= 0

fitted by scipy's curve_fit (bounded, so the b's stay non-negative) to a run's training
loss per step (metrics.jsonl "step" lines). A target accuracy becomes a target loss
through the run's own epoch records (each epoch's mean training loss against its test
accuracy, made monotone), so the fitted curve says at which epoch, and after how much
training time, the run should reach it.

The trainer refreshes `status.json`'s "forecast" object at epoch ends (`LiveForecast`) and
the summary records what the forecast said at 25% and 50% of the run against what
happened (`summary`). docs/run-format.md documents both. No torch here: the app, the
comparisons and `engine optimus` read the same functions.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.core import rundir as rd

MIN_RECORDS = 6  # step records below which no fit is tried at all
ENOUGH_RECORDS, ENOUGH_EPOCHS = 20, 3  # a live forecast once either is reached
ACC_KEY = "test_acc"  # the epoch figure every `expect` metric is read from
MARKS = (0.25, 0.5)  # the summary's forecasts, made with this share of the run


@dataclass(frozen=True)
class LossFit:
    """A fitted l(k); rmse and rel_err over the points it was fitted to (rel_err: mean
    |fit - loss| / loss)."""

    b0: float
    b1: float
    b2: float
    rmse: float
    rel_err: float
    points: int
    last_step: int  # the last step it saw

    def loss_at(self, k):
        """Predicted training loss at step(s) k (a float or a numpy array)."""
        return 1.0 / (self.b0 * np.asarray(k, dtype=float) + self.b1) + self.b2

    def step_for(self, level: float) -> float | None:
        """The step at which the predicted loss comes down to `level`: 0 when it starts
        below, None when it never does (level at or below b2, the loss it tends to)."""
        if level <= self.b2:
            return None
        inv = 1.0 / (level - self.b2)
        if inv <= self.b1:
            return 0.0
        return (inv - self.b1) / self.b0 if self.b0 > 0 else None

    def to_dict(self) -> dict:
        return asdict(self)


def model(k, b0, b1, b2):
    return 1.0 / (b0 * k + b1) + b2


def fit_loss(steps, losses) -> LossFit | None:
    """Least squares fit of l(k) with non-negative b's; None with fewer than MIN_RECORDS
    finite points or when no start converges. Steps are scaled to [0, 1] for the solver
    (b0 is then scaled back), and three starting points are tried."""
    from scipy.optimize import curve_fit

    k = np.asarray(steps, dtype=float)
    y = np.asarray(losses, dtype=float)
    ok = np.isfinite(k) & np.isfinite(y) & (y > 0)
    k, y = k[ok], y[ok]
    if len(k) < MIN_RECORDS or k.max() <= 0:
        return None
    scale = float(k.max())
    x = k / scale
    n = len(y)
    head = float(np.median(y[: max(1, n // 20)]))
    mid = float(np.median(y[n // 2 - max(1, n // 20): n // 2 + max(1, n // 20)]))
    tail = float(np.median(y[-max(1, n // 10):]))
    best = None
    for b2 in (0.0, 0.5 * tail, 0.9 * tail):
        b1 = 1.0 / max(head - b2, 1e-6)
        b0 = max(2.0 * (1.0 / max(mid - b2, 1e-6) - b1), 1e-6)
        try:
            p, _ = curve_fit(model, x, y, p0=(b0, b1, b2), bounds=(0.0, np.inf),
                             method="trf", maxfev=20000)
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        sse = float(np.sum((model(x, *p) - y) ** 2))
        if math.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, p)
    if best is None:
        return None
    b0, b1, b2 = (float(v) for v in best[1])
    fitted = LossFit(b0 / scale, b1, b2, 0.0, 0.0, n, int(k.max()))
    pred = fitted.loss_at(k)
    return LossFit(fitted.b0, b1, b2, float(np.sqrt(np.mean((pred - y) ** 2))),
                   float(np.mean(np.abs(pred - y) / y)), n, int(k.max()))


def curve_error(fit: LossFit, steps, losses) -> float | None:
    """Mean |predicted - measured| / measured over the given step records (a fraction)."""
    k = np.asarray(steps, dtype=float)
    y = np.asarray(losses, dtype=float)
    ok = np.isfinite(y) & (y > 0)
    if not ok.any():
        return None
    return float(np.mean(np.abs(fit.loss_at(k[ok]) - y[ok]) / y[ok]))


# ------------------------------------------------------------------ accuracy <-> loss
def loss_for_accuracy(pairs, target: float) -> tuple[float | None, bool]:
    """The training loss at which test accuracy reaches `target`, from (train loss, test
    accuracy) pairs: accuracy made non-increasing in loss (isotonic regression), then
    interpolated. Past the best accuracy seen, extrapolated on a least-squares line of
    accuracy against loss through the lower-loss half of the pairs (the recent trend: an
    assumption, since accuracy flattens as the loss nears zero, so an early forecast of a
    far target tends to be early); returns (loss, extrapolated), loss None when the pairs
    cannot say (fewer than two, accuracy that does not fall as loss rises, or a target the
    line puts at zero loss)."""
    from scipy.optimize import isotonic_regression

    pts = sorted((float(lo), float(a)) for lo, a in pairs
                 if lo is not None and a is not None and lo > 0 and math.isfinite(lo))
    if len(pts) < 2:
        return None, False
    loss = np.array([p[0] for p in pts])
    acc = np.array([p[1] for p in pts])
    iso = isotonic_regression(acc, increasing=False).x
    if target <= iso.min():  # reached at the highest loss seen already
        return float(loss[-1]), False
    if target <= iso.max():
        # np.interp wants increasing x: accuracy rises as the loss falls
        return float(np.interp(target, iso[::-1], loss[::-1])), False
    # the recent trend: a line through the lower-loss half of the pairs (the later epochs)
    low = max(2, len(pts) // 2)
    slope, icept = np.polyfit(loss[:low], acc[:low], 1)
    if slope >= 0 or (target - icept) / slope <= 0:
        return None, True
    return float((target - icept) / slope), True


def target_of(run_dir: Path) -> dict | None:
    """The run's target from its config.toml ([run] target = {metric, value}), if any."""
    t = rd.read_config(run_dir).get("target")
    if isinstance(t, dict) and isinstance(t.get("value"), (int, float)):
        return {"metric": str(t.get("metric", "")), "value": float(t["value"])}
    return None


def records(run_dir: Path) -> tuple[list, list, list[dict]]:
    """(steps, losses, epoch records) from metrics.jsonl; a resumed run's repeated steps
    keep their last record."""
    got = LiveForecast(run_dir)
    got.read()
    return got.lists()


def first_epoch_at(epochs: list[dict], target: float) -> int | None:
    """The first epoch whose test accuracy reached `target`."""
    return next((m["epoch"] for m in epochs if (m.get(ACC_KEY) or 0.0) >= target), None)


# ------------------------------------------------------------------ forecasts
def forecast(steps, losses, epochs: list[dict], steps_per_epoch: int, total_epochs: int,
             target: dict | None) -> dict | None:
    """What the fitted curve says about the rest of the run: the b's and fit error, the
    predicted mean training loss of the last epoch (the curve at its middle step, which
    an epoch's mean estimates), and for a target the loss it maps to, the first epoch
    whose mean loss the curve puts at or below it, and the training time until then at
    the run's mean seconds per epoch. None when the records are too few to fit."""
    fit = fit_loss(steps, losses)
    if fit is None or steps_per_epoch <= 0:
        return None
    done = epochs[-1]["epoch"] if epochs else 0
    out = {**{k: getattr(fit, k) for k in ("b0", "b1", "b2", "rmse", "rel_err")},
           "points": fit.points, "epoch": done, "last_step": total_epochs * steps_per_epoch,
           "final_loss": float(fit.loss_at((total_epochs - 0.5) * steps_per_epoch)),
           "target": target, "target_loss": None, "extrapolated": False,
           "eta_epoch": None, "eta_s": None, "reached_epoch": None}
    if target is None:
        return out
    out["reached_epoch"] = first_epoch_at(epochs, target["value"])
    loss, extrapolated = loss_for_accuracy(
        [(m.get("train_loss"), m.get(ACC_KEY)) for m in epochs], target["value"])
    out.update(target_loss=loss, extrapolated=extrapolated)
    if loss is None:
        return out
    k = fit.step_for(loss)
    if k is not None:
        # the epoch whose middle step is past k: its mean loss is at or below the target's
        epoch = max(1, math.ceil(k / steps_per_epoch + 0.5))
        if epoch <= total_epochs:
            secs = [m["epoch_s"] for m in epochs if m.get("epoch_s")]
            out["eta_epoch"] = epoch
            out["eta_s"] = epoch * sum(secs) / len(secs) if secs else None
    return out


class LiveForecast:
    """The trainer's side: refits at epoch ends into status["forecast"], reading only the
    metrics lines written since the last call, and spending at most BUDGET of the run's
    time on fitting (a fit of 10,000 records takes about 0.1 s, against epochs of 2 s on
    a fast GPU): until the last epoch, a refit waits until the time since the previous
    one is 1 / BUDGET times what that one took, and the status keeps the last forecast."""

    BUDGET = 0.01

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.tail = rd.MetricsTail(self.run_dir / rd.METRICS)
        self.steps: dict = {}
        self.epochs: dict = {}
        self.cost, self.at = 0.0, None

    def read(self) -> None:
        for m in self.tail.read_new():
            if m.get("kind") == "step" and isinstance(m.get("step"), int) \
                    and m.get("loss") is not None:
                self.steps[m["step"]] = m["loss"]
            elif m.get("kind") == "epoch" and isinstance(m.get("epoch"), int):
                self.epochs[m["epoch"]] = m

    def lists(self) -> tuple[list, list, list[dict]]:
        steps = sorted(self.steps)
        return steps, [self.steps[k] for k in steps], [self.epochs[e] for e in sorted(self.epochs)]

    def refresh(self, status: dict, last: bool = False) -> None:
        self.read()
        now = time.monotonic()
        if not last and self.at is not None and now - self.at < self.cost / self.BUDGET:
            return
        steps, losses, epochs = self.lists()
        status["forecast"] = _safe(lambda: forecast(
            steps, losses, epochs, int(status.get("steps") or 0),
            int(status.get("epochs") or 0), target_of(self.run_dir))
            if _enough(steps, epochs) else None)
        self.cost, self.at = time.monotonic() - now, time.monotonic()


def _safe(fn):
    """A fit that fails leaves no forecast rather than failing the run."""
    try:
        return fn()
    except (ValueError, ArithmeticError, ImportError):
        return None


def _enough(steps: list, epochs: list) -> bool:
    return len(steps) >= MIN_RECORDS and (len(steps) >= ENOUGH_RECORDS
                                         or len(epochs) >= ENOUGH_EPOCHS)


def live(run_dir: Path, status: dict) -> dict | None:
    """The forecast a run's status.json would hold now, from its whole metrics file (None
    until enough is logged); never raises."""
    st = dict(status)
    LiveForecast(run_dir).refresh(st, last=True)
    return st["forecast"]


def at_share(steps, losses, epochs, steps_per_epoch: int, total_epochs: int,
             target: dict | None, share: float) -> dict | None:
    """The forecast as it stood after round(share * epochs) epochs (at least one)."""
    upto = max(1, round(share * total_epochs))
    last = upto * steps_per_epoch
    pts = [(k, v) for k, v in zip(steps, losses) if k <= last]
    got = forecast([p[0] for p in pts], [p[1] for p in pts],
                   [m for m in epochs if m["epoch"] <= upto], steps_per_epoch, total_epochs,
                   target)
    if got is None:
        return None
    return {"epoch": upto, "final_loss": got["final_loss"], "eta_epoch": got["eta_epoch"],
            "target_loss": got["target_loss"], "extrapolated": got["extrapolated"],
            "b0": got["b0"], "b1": got["b1"], "b2": got["b2"]}


def summary(run_dir: Path, steps_per_epoch: int) -> dict | None:
    """The summary's "forecast": the whole run's fit (b's, rmse, rel_err) and, at 25% and
    50% of the run, what the forecast said (predicted final loss, predicted epoch to
    target) against what happened (the last epoch's mean training loss; the first epoch
    whose test accuracy reached the target), with the errors."""
    try:
        steps, losses, epochs = records(run_dir)
        fit = fit_loss(steps, losses)
        if fit is None or not epochs or steps_per_epoch <= 0:
            return None
        target = target_of(run_dir)
        total = epochs[-1]["epoch"]
        actual_loss = epochs[-1].get("train_loss")
        actual_epoch = first_epoch_at(epochs, target["value"]) if target else None
        out = {"b0": fit.b0, "b1": fit.b1, "b2": fit.b2, "rmse": fit.rmse,
               "rel_err": fit.rel_err, "points": fit.points, "target": target,
               "actual_final_loss": actual_loss, "actual_epoch_to_target": actual_epoch}
        for share in MARKS:
            f = at_share(steps, losses, epochs, steps_per_epoch, total, target, share)
            if f is not None:
                f["final_loss_error"] = ((f["final_loss"] - actual_loss) / actual_loss
                                         if actual_loss else None)
                f["epoch_error"] = (f["eta_epoch"] - actual_epoch
                                    if f["eta_epoch"] is not None and actual_epoch is not None
                                    else None)
            out[f"at_{round(100 * share)}"] = f
        return out
    except (ValueError, ArithmeticError, ImportError):
        return None
