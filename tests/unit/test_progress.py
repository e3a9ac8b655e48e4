"""A run's progress lives in its status.json: the trainer's Progress writes it, viewers
read it without opening metrics.jsonl; the CLI prints names and ids whole."""
import time
from datetime import datetime

from conftest import TINY, engine, write_lab
from makers import write_run

from engine.core import progress
from engine.core import rundir as rd
from engine.report.overview import runs_table


def test_progress_counts_steps_and_a_live_eta():
    status = {"state": "running"}
    p = progress.Progress(status, epochs=3, steps=10, done=[])
    p.epoch_t0 = time.time() - 4.0  # four seconds into the first epoch...
    p.written = 0.0
    assert p.step(4)  # ...after 4 of 10 steps: 1 s a step, 10 s an epoch
    assert status["step"] == 4 and abs(status["eta_s"] - 26.0) < 0.5  # 2.6 epochs left
    assert not p.step(5)  # written less than WRITE_EVERY_S ago: not worth a write
    shown = progress.view(status, "running", now=status["updated"] + 6)
    assert abs(shown["eta"] - 20.0) < 0.5  # counts down between writes
    assert (shown["step"], shown["steps"]) == (4, 10)
    p.end_epoch({"epoch": 1, "test_acc": 0.5, "images_per_s": 300.0, "epoch_s": 12.0})
    p.end_epoch({"epoch": 2, "test_acc": 0.4, "images_per_s": 100.0, "epoch_s": 8.0})
    assert status["epoch"] == 2 and status["step"] == 0 and status["best_acc"] == 0.5
    assert status["images_per_s"] == 200.0 and status["epoch_s"] == 10.0
    assert status["eta_s"] == 10.0


def test_elapsed_leaves_out_the_time_a_run_was_stopped():
    t0 = time.time() - 1000
    ended = datetime.fromtimestamp(t0 + 100).astimezone().isoformat(timespec="seconds")
    status = {"state": "cancelled", "segment_start": t0, "ended": ended}
    progress.start_segment(status, resume=True)  # it ran 100 s, stopped, resumed 900 s later
    assert abs(status["active_before"] - 100) <= 1
    now = status["segment_start"]
    assert abs(progress.view(status, "running", now=now + 5)["elapsed"] - 105) <= 1
    status["updated"] = now + 20
    lost = progress.view(status, "lost", now=now + 500)
    assert abs(lost["elapsed"] - 120) <= 1  # a lost run stops counting at its last write


def _run(runs, exp, run_id, **status):
    return write_run(runs, exp, run_id, status={"epoch": 2, "epochs": 2, **status})


def test_the_runs_table_reads_status_not_metrics(tmp_path):
    runs = tmp_path / "runs"
    d = _run(runs, "exp", "20261125-000000-aaaa", best_acc=0.75, images_per_s=123.0,
             segment_start=1000.0, ended="1970-01-01T00:20:00+00:00")
    (d / rd.METRICS).write_text("not json at all\n")  # never opened
    row = runs_table(rd.list_runs(runs)).rows[0]
    assert row[5:8] == [0.75, 123.0, 200.0]


def test_status_prints_whole_names_and_ids_when_piped_and_survives_a_broken_toml(tmp_path):
    runs = tmp_path / "runs"
    long_name = "linear_probe_from_rotation_pretraining_with_a_long_name"
    for i in range(3):
        _run(runs, long_name, f"20261125-10000{i}-ab{i}d")
    cfg = write_lab(tmp_path, TINY + '\n[experiment.broken]\nepochs = "x"\n')
    proc = engine("status", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.count(long_name) == 3 and "20261125-100002-ab2d" in proc.stdout
    assert "\x1b[" not in proc.stdout and "…" not in proc.stdout  # plain text
    assert proc.stderr.startswith("note: ") and "epochs must be an integer" in proc.stderr
    listing = engine("list", "--config", cfg)
    assert listing.returncode == 2  # list needs the experiments, status only the runs
