"""The Optimus study end to end on tiny synthetic data: a sweep of CIFAR ResNets by depth
trains through the CLI, every run keeps a live forecast in status.json and the forecasts
at 25% and 50% in its summary, the forecast comparison lists them, and `engine optimus`
fits, regresses, predicts the held-out depth and times it against workers."""
import csv
import io
import json

import pytest
from conftest import TINY, engine

from engine.core.config import load
from engine.live.watcher import compare_data

OPTIMUS = TINY + """
[experiment.obase]
title = "Optimus base"
group = "Optimus"
model = "resnet20"
optimizer = "sgd"
lr = 0.05
momentum = 0.9
schedule = "cosine"
log_every = 1
expect = { metric = "test_acc_at_best", value = 0.2 }

[sweep.odepths]
title = "Tiny ResNets by depth"
base = "obase"
axes = { model = ["resnet20", "resnet32", "resnet44"] }

[compare.ofc]
title = "Tiny forecasts"
kind = "forecast"
sweeps = ["odepths"]

[compare.ostudy]
title = "Tiny Optimus study"
kind = "optimus"
sweeps = ["odepths"]
holdout = "resnet44"
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimus")
    cfg = root / "experiments.toml"
    cfg.write_text(OPTIMUS)
    engine("sweep", "odepths", "--config", cfg, "--quiet", "--now", check=True, timeout=900)
    return cfg


def test_every_run_of_the_sweep_records_its_forecast(swept):
    runs = sorted((swept.parent / "runs" / "odepths").iterdir())
    assert len(runs) == 3
    for run in runs:
        assert "target = { metric = \"test_acc_at_best\", value = 0.2 }" in \
            (run / "config.toml").read_text()
        live = json.loads((run / "status.json").read_text())["forecast"]
        # 10 steps an epoch, a record every step: made at the last epoch from 40 records
        assert live["epoch"] == 4 and live["points"] == 40 and live["last_step"] == 40
        assert min(live["b0"], live["b1"], live["b2"]) >= 0
        assert live["target"] == {"metric": "test_acc_at_best", "value": 0.2}
        summary = json.loads((run / "summary.json").read_text())["forecast"]
        assert summary["at_25"]["epoch"] == 1 and summary["at_50"]["epoch"] == 2
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                  if '"epoch"' in line and '"kind":"epoch"' in line]
        assert summary["actual_final_loss"] == epochs[-1]["train_loss"]
        reached = next((m["epoch"] for m in epochs if m["test_acc"] >= 0.2), None)
        assert summary["actual_epoch_to_target"] == reached
        half = summary["at_50"]
        assert half["final_loss_error"] == pytest.approx(
            (half["final_loss"] - epochs[-1]["train_loss"]) / epochs[-1]["train_loss"])


def test_forecast_comparison_lists_each_point(swept):
    out = engine("compare", "ofc", "--format", "csv", "--config", swept, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["Run of"] for r in rows] == [f"odepths model=resnet{d}" for d in (20, 32, 44)]
    assert all(float(r["b1"]) >= 0 and r["Loss @50%"] and r["Final loss"] for r in rows)


def test_the_study_end_to_end(swept):
    out_dir = swept.parent / "study"
    proc = engine("optimus", "odepths", "--holdout", "resnet44", "--target", "0.15",
                  "--depth", "50", "--out", out_dir, "--config", swept, check=True)
    assert "Optimus loss model per run" in proc.stdout and "2 PS" in proc.stdout
    result = json.loads((out_dir / "optimus-odepths.json").read_text())
    assert [r["model"] for r in result["runs"]] == ["resnet20", "resnet32", "resnet44"]
    assert [r["role"] for r in result["runs"]] == ["regression", "regression", "held out"]
    assert set(result["regression"]["coef"]) == {"b0", "b1", "b2"}
    assert result["predicted"]["depth"] == 44 and result["predicted"]["curve_error"] >= 0
    assert "50" in result["depths"]
    assert "not measured" in result["speed"]["source"]
    if result["epochs_to_target"]["predicted"] is not None:
        times = result["time_to_target_s"]
        assert set(times) == {"2", "4"} and [w for w, _ in times["2"]] == [1, 2, 4, 8, 16, 32]
        assert all(s > 0 for _, s in times["4"])
    for suffix in (".md", ".csv", "-time.md", "-time.csv"):
        assert (out_dir / f"optimus-odepths{suffix}").exists()
    assert (out_dir / "optimus-odepths.png").read_bytes()[:4] == b"\x89PNG"
    table = engine("compare", "ostudy", "--config", swept, check=True).stdout
    assert "resnet44 predicted" in table and "b0 = " in table
    # the app's Compare view gets the time-to-target curve; export writes it as PNG
    data = compare_data(load(swept), "ostudy", swept.parent / "runs")
    exported = engine("export", "ostudy", "--config", swept, check=True).stdout.split()
    if result["epochs_to_target"]["predicted"] is not None:
        assert data.curve.axis == "workers" and data.curve.ylabel.startswith("time to")
        assert [line for line, _ in data.curve.lines] == ["2 PS", "4 PS"]
        assert any(p.endswith("ostudy-workers.png") for p in exported)


def test_the_study_refuses_bad_input_in_one_line(swept):
    for args, says in ((["nosuch"], "no sweep named"),
                       (["odepths", "--holdout", "resnet99"], "--holdout"),
                       (["odepths", "--target", "5"], "--target 5.0")):
        proc = engine("optimus", *args, "--no-files", "--config", swept)
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
