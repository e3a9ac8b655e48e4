"""The app's watcher as plain Python, without Textual, on a runs folder the test writes."""
import dataclasses
import json

import pytest
from conftest import write_lab
from makers import write_run

from engine.core import rundir as rd
from engine.live.gpu import GpuMonitor
from engine.live.lab import Lab
from engine.live.watcher import Watcher


def step(n, loss=1.0):
    return {"kind": "step", "epoch": 1, "step": n, "loss": loss, "lr": 0.01}


def epoch(n, acc):
    return {"kind": "epoch", "epoch": n, "train_loss": 1.0 / n, "train_acc": acc,
            "test_loss": 1.1 / n, "test_acc": acc, "lr": 0.01, "images_per_s": 100.0,
            "epoch_s": 2.0}


def lines(*records) -> str:
    return "".join(json.dumps(m) + "\n" for m in records)


@pytest.fixture
def lab(tmp_path):
    cfg = write_lab(tmp_path)
    run = write_run(tmp_path / "runs", "scratch", "20261125-102000-cccc", "running", status={
        "experiment": "scratch", "run_id": "20261125-102000-cccc", "host": "elsewhere",
        "started": "2026-11-25T10:00:00+00:00", "epoch": 1, "epochs": 4},
        files={rd.METRICS: lines(step(1), step(2))}, log="first line\n")
    watcher = Watcher(Lab(cfg), GpuMonitor(enabled=False))
    watcher.select_run(str(run))
    return watcher, run


def test_snapshot_is_immutable_and_carries_what_the_views_show(lab):
    watcher, run = lab
    snap = watcher.poll()
    assert snap.config is not None and snap.config_error is None
    assert [r.experiment for r in snap.rows] == ["scratch"] and snap.runs_changed
    assert snap.log_lines == ("first line",)
    assert snap.compare.name == "summary"  # the first comparison until the UI picks one
    assert snap.gpus is None and snap.gpu_error == "GPU readings off"
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.rows = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.rows[0].state = "done"
    assert isinstance(snap.rows, tuple) and isinstance(snap.series.step_x, tuple)
    assert isinstance(snap.compare.rows, tuple)
    (run / rd.METRICS).write_text(lines(step(1), step(2), epoch(1, 0.5)))
    with pytest.raises(TypeError):  # epoch records are read-only too
        watcher.poll().series.epochs[0]["test_acc"] = 1.0


def test_series_grow_incrementally_and_old_snapshots_stay_as_they_were(lab):
    watcher, run = lab
    first = watcher.poll().series
    assert first.step_x == (1, 2) and first.epochs == ()
    with open(run / rd.METRICS, "a") as f:
        f.write(lines(step(3), epoch(1, 0.5)))
    second = watcher.poll().series
    assert second.step_x == (1, 2, 3) and second.version > first.version
    assert second.column("test_acc") == ((1,), (0.5,))
    assert first.step_x == (1, 2) and first.epochs == ()  # a copy, not the watcher's lists
    assert watcher.poll().series is second  # nothing new: the same copy, not a new one
    assert not watcher.poll().runs_changed


def test_a_torn_last_line_is_read_on_the_next_poll(lab):
    watcher, run = lab
    watcher.poll()
    whole = json.dumps(step(3, loss=0.25)) + "\n"
    with open(run / rd.METRICS, "a") as f:
        f.write(whole[:10])  # the writer is mid-line
    assert watcher.poll().series.step_x == (1, 2)
    with open(run / rd.METRICS, "a") as f:
        f.write(whole[10:])
    series = watcher.poll().series
    assert series.step_x == (1, 2, 3) and series.step_loss[-1] == 0.25


def test_a_resumed_run_whose_metrics_got_shorter_is_read_again(lab):
    watcher, run = lab
    (run / rd.METRICS).write_text(lines(step(1), step(2), epoch(1, 0.3), step(3), step(4),
                                        epoch(2, 0.4)))
    assert watcher.poll().series.column("test_acc")[0] == (1, 2)
    # resume trims the epochs after its checkpoint: the file is rewritten, shorter
    (run / rd.METRICS).write_text(lines(step(1), step(2), epoch(1, 0.35)))
    series = watcher.poll().series
    assert series.step_x == (1, 2) and series.column("test_acc") == ((1,), (0.35,))
    with open(run / rd.METRICS, "a") as f:  # and goes on from there
        f.write(lines(step(3), epoch(2, 0.45)))
    assert watcher.poll().series.column("test_acc") == ((1, 2), (0.35, 0.45))


def test_rows_and_compare_follow_the_runs_and_the_selection(lab):
    watcher, run = lab
    watcher.poll()
    status = json.loads((run / rd.STATUS).read_text())
    (run / rd.STATUS).write_text(json.dumps(dict(status, state="done", epoch=4)))
    (run / rd.SUMMARY).write_text(json.dumps({"test_acc_at_best": 0.5, "best_epoch": 4}))
    snap = watcher.poll()
    assert snap.runs_changed and snap.rows[0].state == "done"
    assert snap.rows[0].summary["test_acc_at_best"] == 0.5
    before = snap.compare
    assert watcher.poll().compare is before  # nothing changed: not read again
    watcher.select_compare("side")
    assert watcher.poll().compare.name == "side"
    watcher.select_run(None)
    assert watcher.poll().series is None


def test_a_quiet_lab_has_no_news_and_a_changed_status_has(tmp_path):
    """With nothing live, a poll finds nothing new (the app then posts nothing: an idle
    app costs next to no CPU however many runs there are); a finished run's status read
    again on a full scan, and a new run, are news."""
    cfg = write_lab(tmp_path)
    runs = tmp_path / "runs" / "scratch"
    for i in range(3):
        write_run(tmp_path / "runs", "scratch", f"20261125-10000{i}-aaaa",
                  status={"epoch": 4, "epochs": 4, "best_acc": 0.5})
    watcher = Watcher(Lab(cfg), GpuMonitor(enabled=False))
    first = watcher.poll()
    second = watcher.poll()
    assert len(second.rows) == 3 and not second.news_since(first)
    assert all(a is b for a, b in zip(first.rows, second.rows))
    (runs / "20261125-100000-aaaa" / rd.STATUS).write_text(json.dumps(
        {"state": "cancelled", "epoch": 2, "epochs": 4}))
    watcher.rescan()  # as the app does after it resumes a run
    third = watcher.poll()
    assert third.news_since(second) and third.row(str(runs / "20261125-100000-aaaa")).state \
        == "cancelled"
    write_run(tmp_path / "runs", "scratch", "20261125-100009-bbbb", "queued")
    fourth = watcher.poll()
    assert fourth.news_since(third) and len(fourth.rows) == 4
