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


def test_the_probe_after_the_epochs_has_its_own_progress_and_eta(tmp_path):
    """An SSL run showed ETA 0s through its linear probe, which takes longer (#26)."""
    status = {"state": "running", "segment_start": time.time()}
    p = progress.Progress(status, epochs=2, steps=10, done=[])
    p.end_epoch({"epoch": 2, "test_acc": 0.5, "images_per_s": 300.0, "epoch_s": 12.0})
    p.start_phase("probe", 100)
    shown = progress.view(status, "running")
    assert shown["phase"] == "probe 0/100" and shown["eta"] is None  # unknown, not 0 s
    p.phase_t0 -= 10.0  # ten seconds in...
    p.written = 0.0
    assert p.phase_step(20)  # ...after 20 of 100 probe epochs
    shown = progress.view(status, "running", now=status["updated"])
    assert shown["phase"] == "probe 20/100" and abs(shown["eta"] - 40.0) < 0.5
    run = write_run(tmp_path / "runs", "ssl", "20261203-100000-aaaa", "running",
                    status={**status, "pid": None, "epoch": 2, "epochs": 2})
    table = runs_table([rd.load_run(run, lambda s: True)])
    cells = dict(zip([c for c, _ in table.columns], table.formatted()[0]))
    assert cells["Step"] == "probe 20/100" and cells["ETA"] == "40s"
    p.end_phase()
    assert progress.view(status, "running")["phase"] is None


def test_log_every_auto_gives_a_short_run_about_fifty_points_and_a_long_one_every_20():
    """A 2-epoch SSL run's step-loss and lr plots held a single dot at log_every = 20."""
    from engine.train.records import log_interval

    assert log_interval(2 * 20) == 1  # 40 steps: every one
    assert log_interval(10 * 25) == 5  # 250 steps: 50 points
    assert log_interval(30 * 390) == 20  # part 1: at most a sync every 20 steps
