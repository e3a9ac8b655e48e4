"""The Optimus loss model and the live forecast (engine/forecast.py), on synthetic curves
and on run directories written by hand (no training)."""
import json

import numpy as np
import pytest

from engine.core import rundir as rd
from engine.perf import forecast as fc
from engine.perf.shown import fitted_points, headline

B = (0.002, 0.5, 0.3)  # b0, b1, b2


def curve(k, b=B):
    return 1.0 / (b[0] * np.asarray(k, dtype=float) + b[1]) + b[2]


def noisy(k, b=B, noise=0.03, seed=0):
    rng = np.random.default_rng(seed)
    return curve(k, b) * (1 + noise * rng.standard_normal(len(k)))


@pytest.mark.parametrize("b", [B, (1e-4, 0.4, 0.1), (5e-5, 0.45, 0.2)])
def test_fit_recovers_known_bs_from_a_noisy_curve_within_5_percent(b):
    k = np.arange(1, 20001, 10)
    fit = fc.fit_loss(k, noisy(k, b))
    for got, want in zip((fit.b0, fit.b1, fit.b2), b):
        assert abs(got - want) / want < 0.05, (got, want)
    assert fit.points == len(k) and fit.last_step == k[-1]
    assert fit.rel_err < 0.04  # the 3% noise, not a misfit


def test_the_bs_stay_non_negative_on_a_curve_that_rises():
    k = np.arange(1, 200)
    fit = fc.fit_loss(k, 1.0 + 0.001 * k)
    assert fit is not None and min(fit.b0, fit.b1, fit.b2) >= 0


def test_too_few_points_give_no_fit():
    assert fc.fit_loss([1, 2, 3], [2.0, 1.5, 1.2]) is None
    assert fc.fit_loss(range(10), [float("nan")] * 10) is None


def test_step_for_inverts_loss_at():
    fit = fc.LossFit(*B, 0.0, 0.0, 0, 0)
    for k in (0.0, 10.0, 1234.0):
        assert fit.step_for(float(fit.loss_at(k))) == pytest.approx(k, abs=1e-6)
    assert fit.step_for(B[2]) is None  # the floor is never reached
    assert fit.step_for(10.0) == 0.0  # below the start


def test_loss_for_accuracy_interpolates_a_monotone_map():
    pairs = [(2.0, 0.3), (1.0, 0.6), (0.5, 0.8), (0.7, 0.75)]
    loss, extrapolated = fc.loss_for_accuracy(pairs, 0.7)
    assert 0.7 < loss < 1.0 and not extrapolated
    assert fc.loss_for_accuracy(pairs, 0.1) == (2.0, False)  # reached at the first epoch


def test_loss_for_accuracy_extrapolates_past_the_best_seen():
    pairs = [(2.0, 0.3), (1.0, 0.5), (0.5, 0.7)]
    # the line through the two lowest losses: acc = 0.9 - 0.4 * loss
    loss, extrapolated = fc.loss_for_accuracy(pairs, 0.8)
    assert extrapolated and loss == pytest.approx(0.25)
    assert fc.loss_for_accuracy(pairs, 0.95) == (None, True)  # past zero loss
    assert fc.loss_for_accuracy([(1.0, 0.5)], 0.9) == (None, False)
    # accuracy that rises with the loss: nothing to extrapolate
    assert fc.loss_for_accuracy([(2.0, 0.7), (1.0, 0.5)], 0.9)[0] is None


def synthetic_run(path, epochs=10, done=None, steps_per=20, target=0.75, b=B):
    """A run directory: step records of a known curve, epoch records whose accuracy
    follows the training loss (acc = 1.1 - 0.5 * loss), config.toml with its target."""
    done = done or epochs
    path.mkdir(parents=True)
    lines = []
    for e in range(1, done + 1):
        ks = np.arange((e - 1) * steps_per + 1, e * steps_per + 1)
        lines += [{"kind": "step", "epoch": e, "step": int(k), "loss": float(curve(k, b))}
                  for k in ks[1::2]]
        mean = float(np.mean(curve(ks, b)))
        lines.append({"kind": "epoch", "epoch": e, "train_loss": mean,
                      "test_acc": 1.1 - 0.5 * mean, "epoch_s": 10.0})
    (path / rd.METRICS).write_text("".join(json.dumps(m) + "\n" for m in lines))
    run = {"experiment": "x"}
    if target is not None:
        run["target"] = {"metric": "test_acc_at_best", "value": target}
    rd.atomic_write_text(path / rd.CONFIG, rd.dump_toml({"run": run, "settings": {}}))
    return {"steps": steps_per, "epochs": epochs}


def expected_epoch(target, steps_per, b=B):
    """The first epoch whose mean loss (as the synthetic accuracy maps it) reaches target."""
    for e in range(1, 1000):
        ks = np.arange((e - 1) * steps_per + 1, e * steps_per + 1)
        if 1.1 - 0.5 * float(np.mean(curve(ks, b))) >= target:
            return e


def test_live_forecast_from_half_a_run_names_the_epoch_the_curve_reaches(tmp_path):
    # b's for which 0.75 comes in the second half of 40 epochs of 20 steps
    b = (0.004, 0.5, 0.35)
    status = synthetic_run(tmp_path / "r", epochs=40, done=20, b=b)
    want = expected_epoch(0.75, 20, b)
    assert 20 < want <= 40
    got = fc.live(tmp_path / "r", status)
    assert got["epoch"] == 20 and got["points"] == 200
    assert got["b0"] == pytest.approx(b[0], rel=0.05)
    assert abs(got["eta_epoch"] - want) <= 1
    assert got["eta_s"] == pytest.approx(10.0 * got["eta_epoch"])
    assert got["final_loss"] == pytest.approx(float(curve(39.5 * 20, b)), rel=0.02)
    assert got["reached_epoch"] is None and got["extrapolated"]
    assert headline(got, 40).endswith(f"target 75% ~ epoch {got['eta_epoch']}, "
                                         f"{got['eta_epoch'] * 10 // 60}m"
                                         f"{got['eta_epoch'] * 10 % 60:02d}s")


def test_a_target_past_the_runs_epochs_is_not_reached(tmp_path):
    status = synthetic_run(tmp_path / "r", epochs=12, done=6)
    got = fc.live(tmp_path / "r", status)
    assert got["eta_epoch"] is None and got["target_loss"] is not None
    assert headline(got, 12).endswith("target 75% not reached in 12 epochs")


def test_no_forecast_until_enough_is_logged_and_none_without_a_target(tmp_path):
    status = synthetic_run(tmp_path / "few", epochs=10, done=1, steps_per=8)
    assert fc.live(tmp_path / "few", status) is None  # 4 records, 1 epoch
    status = synthetic_run(tmp_path / "free", epochs=10, done=4, target=None)
    got = fc.live(tmp_path / "free", status)
    assert got["target"] is None and got["eta_epoch"] is None
    assert headline(got, 10) == f"forecast: final loss {got['final_loss']:.3g}"


def test_summary_holds_the_forecasts_at_25_and_50_percent_against_the_outcome(tmp_path):
    synthetic_run(tmp_path / "r", epochs=40, b=(0.004, 0.5, 0.35))
    s = fc.summary(tmp_path / "r", 20)
    actual = expected_epoch(0.75, 20, (0.004, 0.5, 0.35))
    assert s["actual_epoch_to_target"] == actual
    assert s["at_25"]["epoch"] == 10 and s["at_50"]["epoch"] == 20
    half = s["at_50"]
    assert abs(half["final_loss_error"]) < 0.02  # a noiseless curve: the fit is the curve
    assert half["epoch_error"] == half["eta_epoch"] - actual and abs(half["epoch_error"]) <= 1
    assert s["rel_err"] < 1e-3 and s["points"] == 400


def test_fitted_points_span_the_run():
    xs, ys = fitted_points({"b0": B[0], "b1": B[1], "b2": B[2]}, 1, 800, n=5)
    assert xs[0] == 1 and xs[-1] == 800 and len(ys) == 5
    assert ys[-1] == pytest.approx(float(curve(800)))
    assert fitted_points({}, 1, 800) == ((), ())


def test_the_trainers_refit_reads_only_new_lines_and_keeps_to_its_time_budget(tmp_path):
    status = synthetic_run(tmp_path / "r", epochs=40, done=10, b=(0.004, 0.5, 0.35))
    live = fc.LiveForecast(tmp_path / "r")
    live.refresh(status)
    first = status["forecast"]
    assert first["epoch"] == 10 and first == fc.live(tmp_path / "r", status)
    with open(tmp_path / "r" / rd.METRICS, "a") as f:  # the next epoch's lines
        f.write(json.dumps({"kind": "step", "epoch": 11, "step": 202, "loss": 0.9}) + "\n")
        f.write(json.dumps({"kind": "epoch", "epoch": 11, "train_loss": 0.9,
                            "test_acc": 0.65, "epoch_s": 10.0}) + "\n")
    live.cost = 3600.0  # as if the last fit had been slow: the next waits
    live.refresh(status)
    assert status["forecast"] is first and len(live.steps) == 101
    live.refresh(status, last=True)  # the last epoch always refits
    assert status["forecast"]["epoch"] == 11 and status["forecast"]["points"] == 101
