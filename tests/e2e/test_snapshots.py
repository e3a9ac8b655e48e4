"""Screens at 80x24, 100x30, 120x40 and 200x50 against SVG snapshots, on a runs folder the
test writes.

Regenerate after an intended change (and a look at the screens):
python -m pytest tests/e2e/test_snapshots.py --snapshot-update
"""
import math
import statistics

import pytest
from conftest import app_until, write_lab
from makers import write_run
from rich.text import Text

from tui.app import RotundaApp
from tui.screens import gallery
from tui.views import RunView

LONG_ERROR = ("CIFAR-10 not found in /data (looked for cifar-10-batches-py/ and "
              "train/<class>/) and the download failed (no network). Put the dataset there, "
              "set data_dir, or try the synthetic demo: python -m engine run demo")


# The loss model's forecast as the trainer keeps it in status.json (engine/forecast.py)
FORECAST = {"b0": 0.05, "b1": 0.4, "b2": 0.1, "rmse": 0.05, "rel_err": 0.04, "points": 20,
            "epoch": 2, "last_step": 40, "final_loss": 0.68,
            "target": {"metric": "test_acc_at_best", "value": 0.4}, "target_loss": 0.7,
            "extrapolated": True, "eta_epoch": 4, "eta_s": 200.0, "reached_epoch": None}


def write_demo_run(runs, exp, run_id, state, epochs, acc0, error=None, first_test_loss=None,
                   forecast=None, config=None):
    """A run of `epochs` epochs (of 4) with made-up curves rising from `acc0`: its status,
    metrics, log and (when done) summary, fixed so that screens compare."""
    status = {"experiment": exp, "run_id": run_id, "pid": 1, "host": "elsewhere",
              "started": "2026-11-25T10:00:00+00:00", "ended": "2026-11-25T10:03:25+00:00",
              "error": error, "epoch": epochs, "epochs": 4,
              # progress as the trainer keeps it after each epoch (engine/progress.py)
              "steps": 10, "step": 0, "best_acc": acc0 + 0.08 * epochs, "epoch_s": 50.0,
              "images_per_s": statistics.median(300.0 + 10 * e for e in range(1, epochs + 1)),
              "forecast": forecast}
    lines = []
    for e in range(1, epochs + 1):
        for s in range(10):
            step = (e - 1) * 10 + s + 1
            lines.append({"kind": "step", "epoch": e, "step": step,
                          "loss": 2.3 * math.exp(-step / 15) + 0.1, "lr": 0.002 * (1 - step / 40)})
        lines.append({"kind": "epoch", "epoch": e, "train_loss": 2.0 / e, "train_acc": acc0 + 0.1 * e,
                      "test_loss": first_test_loss if e == 1 and first_test_loss else 2.2 / e,
                      "test_acc": acc0 + 0.08 * e, "lr": 0.002 * (1 - e / 4),
                      "images_per_s": 300.0 + 10 * e, "gpu_mem_peak_mb": None, "epoch_s": 50.0})
    log = "".join(
        f"10:0{e}:00 epoch {e}/4: train loss {2.0 / e:.4f} acc {acc0 + 0.1 * e:.4f} | test loss "
        f"{2.2 / e:.4f} acc {acc0 + 0.08 * e:.4f} | lr 0.002 | {300 + 10 * e} img/s | 50.0s\n"
        for e in range(1, epochs + 1)) + (f"10:09:00 failed: {error}\n" if error else "")
    summary = {
        "epochs": epochs, "best_epoch": epochs, "test_acc_at_best": acc0 + 0.08 * epochs,
        "final_test_acc": acc0 + 0.08 * epochs, "best_test_acc": acc0 + 0.08 * epochs,
        "wall_s": 205.0, "median_images_per_s": 320.0, "params_trainable": 11181642,
        "params_total": 11181642} if state == "done" else None
    return write_run(runs, exp, run_id, state, status=status, summary=summary, metrics=lines,
                     log=log, checkpoints=True, config=config)


@pytest.fixture
def fixed_lab(tmp_path):
    cfg = write_lab(tmp_path)
    runs = tmp_path / "runs"
    write_demo_run(runs, "rot", "20261125-100000-aaaa", "done", 4, 0.3)
    # a smoke run, at settings its experiment does not declare: the tables footnote it
    write_demo_run(runs, "ft", "20261125-101000-bbbb", "done", 4, 0.2, config={
        "run": {"experiment": "ft", "run_id": "20261125-101000-bbbb"},
        "settings": {"limit_train": 500, "epochs": 1}})
    write_demo_run(runs, "scratch", "20261125-102000-cccc", "failed", 2, 0.1, error=LONG_ERROR,
                   first_test_loss=177.0, forecast=FORECAST)
    return cfg


VIEWS = {"experiments": [], "runs": ["2"], "run": ["2", "enter"], "compare": ["4"],
         "gallery": ["2", "down", "g"], "workspace": ["4", "w"]}
SIZES = [(80, 24), (100, 30), (120, 40), (200, 50)]


def fake_gallery(run_dir, width):
    """What `engine gallery --width W` prints, without torch: (W + 2) // 18 images a row,
    each 16 columns of half-blocks and 2 of padding, a label and a prediction below."""
    per_row, out = (width + 2) // 18, Text()
    for first in range(0, 20, per_row):
        shown = range(first, min(first + per_row, 20))
        for line in range(8):
            for i in shown:
                out.append("▀" * 16, style=f"rgb({12 * i},{30 * line},200) on rgb(40,40,40)")
                out.append("  ")
            out.append("\n")
        out.append("  ".join(f"{'class ' + str(i % 10):<16}" for i in shown) + "\n")
        out.append("  ".join(f"{'✓ class ' + str(i % 10):<16}" for i in shown) + "\n")
    return out + Text("20/20 correct (bold: true label; below: predicted)")


CASES = [(view, size) for view in VIEWS for size in SIZES
         if not (view == "gallery" and size == (120, 40))]  # the three sizes


@pytest.mark.parametrize("view, size", CASES,
                         ids=[f"{v}-{w}x{h}" for v, (w, h) in CASES])
def test_main_views(snap_compare, fixed_lab, monkeypatch, view, size):
    monkeypatch.setattr(gallery, "gallery_text", fake_gallery)
    monkeypatch.setattr(gallery, "has_checkpoint", lambda run_dir: True)
    app = RotundaApp(fixed_lab, gpu=False, poll_s=0.1)

    async def settle(pilot):
        app.sub_title = "experiments.toml"  # not the test's temporary path
        await app_until(pilot, lambda: len(app.snapshot.rows) == 3, "the three runs")
        for key in VIEWS[view]:
            await pilot.press(key)
            await pilot.pause(0.3)
        run = app.query_one(RunView)
        await app_until(pilot, lambda: view != "run" or (  # they come in a later poll
            run.query_one("#run-log").lines and run.drawn is not None and not run.dirty),
            "the run's log and curves")
        ws = app.query_one("#workspace")
        await app_until(pilot, lambda: view != "workspace" or (
            ws.keys and len(ws.series()) == len(ws.keys)), "the workspace's curves")
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=size, run_before=settle)
