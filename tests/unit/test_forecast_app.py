"""The forecast in the app: the watcher's row carries status.json's forecast (read-only),
the run header says what it says, and a done run's header what the 50% forecast said
against the outcome; the Optimus comparison brings its own curve. No Textual app runs."""
import pytest
from conftest import TINY, write_lab
from makers import write_run

from engine.core import rundir as rd
from engine.live.gpu import GpuMonitor
from engine.live.lab import Lab
from engine.live.watcher import Watcher, run_row
from tui.views.run import forecast_text

LIVE = {"b0": 0.01, "b1": 0.5, "b2": 0.2, "rmse": 0.05, "rel_err": 0.03, "points": 60,
        "epoch": 10, "last_step": 3000, "final_loss": 0.412,
        "target": {"metric": "test_acc_at_best", "value": 0.78}, "target_loss": 0.45,
        "extrapolated": True, "eta_epoch": 23, "eta_s": 840.0, "reached_epoch": None}


def write(tmp_path, state="running", forecast=LIVE, summary=None):
    run = write_run(tmp_path / "runs", "scratch", "20261125-102000-cccc", state, status={
        "experiment": "scratch", "run_id": "20261125-102000-cccc", "host": "elsewhere",
        "started": "2026-11-25T10:00:00+00:00", "epoch": 10, "epochs": 30, "steps": 100,
        "forecast": forecast}, summary=summary)
    return rd.load_run(run)


def test_a_running_run_shows_its_target_epoch_and_time(tmp_path):
    row = run_row(write(tmp_path), 0.0)
    with pytest.raises(TypeError):
        row.forecast["b0"] = 1.0  # read-only, as every snapshot field
    assert forecast_text(row) == "forecast: final loss 0.412; target 78% ~ epoch 23, 14m00s"


def test_a_target_beyond_the_run_and_a_run_without_a_forecast(tmp_path):
    far = dict(LIVE, eta_epoch=None, eta_s=None)
    assert forecast_text(run_row(write(tmp_path / "a", forecast=far), 0.0)) == \
        "forecast: final loss 0.412; target 78% not reached in 30 epochs"
    assert forecast_text(run_row(write(tmp_path / "b", forecast=None), 0.0)) is None


def test_a_done_run_shows_the_half_way_forecast_against_the_outcome(tmp_path):
    summary = {"forecast": {
        "b0": 0.01, "b1": 0.5, "b2": 0.2, "target": LIVE["target"], "actual_final_loss": 0.4,
        "actual_epoch_to_target": 25,
        "at_50": {"epoch": 15, "final_loss": 0.42, "eta_epoch": 23, "final_loss_error": 0.05,
                  "epoch_error": -2}}}
    row = run_row(write(tmp_path, "done", summary=summary), 0.0)
    assert forecast_text(row) == ("forecast at epoch 15: final loss 0.42, was 0.4 (+5.00%); "
                                  "target 78%: said epoch 23, was epoch 25")


def test_the_optimus_comparison_brings_its_time_curve(tmp_path):
    """A study that cannot run yet says why in its notes, and no curve; the watcher's
    compare data for kind optimus is otherwise built like every comparison's."""
    cfg = write_lab(tmp_path, TINY + """
[sweep.depths]
base = "scratch"
axes = { model = ["resnet20", "resnet32"] }

[compare.study]
kind = "optimus"
sweeps = ["depths"]
""")
    watcher = Watcher(Lab(cfg), GpuMonitor(enabled=False))
    watcher.select_compare("study")
    data = watcher.poll().compare
    assert data.name == "study" and data.curve is None
    assert any("has no finished run" in n for n in data.notes)
