"""What the app and `engine status` show of a run's forecast (forecast.py fits it): no
numpy here, so that the app starts without importing it."""
from __future__ import annotations

from engine.core.table import duration


def fitted_points(fc: dict, first: float, last: float, n: int = 60) -> tuple[tuple, tuple]:
    """The forecast's curve sampled from step `first` to `last`, for plots."""
    if not fc or last <= first:
        return (), ()
    b0, b1, b2 = (float(fc[k]) for k in ("b0", "b1", "b2"))
    xs = tuple(first + (last - first) * i / (n - 1) for i in range(n)) if n > 1 else (first,)
    return xs, tuple(1.0 / (b0 * x + b1) + b2 for x in xs)


def headline(fc: dict | None, epochs: int) -> str | None:
    """One line for the app and `engine status`: "target 78% ~ epoch 23, 14m" or "target
    78% not reached in 30 epochs", and the predicted final loss."""
    if not fc:
        return None
    text = f"forecast: final loss {fc['final_loss']:.3g}"
    t = fc.get("target")
    if t:
        pct = f"{100 * t['value']:g}%"
        if fc.get("reached_epoch"):
            text += f"; target {pct} reached at epoch {fc['reached_epoch']}"
        elif fc.get("eta_epoch"):
            secs = f", {duration(fc['eta_s'])}" if fc.get("eta_s") else ""
            text += f"; target {pct} ~ epoch {fc['eta_epoch']}{secs}"
        elif fc.get("target_loss") is None:
            text += f"; target {pct}: no loss maps to it yet"
        else:
            text += f"; target {pct} not reached in {epochs} epochs"
    return text
