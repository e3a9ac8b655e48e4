"""Runs as Slurm jobs, against a real single-node Slurm (the slurm_cluster fixture starts
one; tests/slurm.py): launch from the CLI and the app, Slurm's state in the runs table,
a sweep's points as jobs, scancel, a requeue by someone else and the job's own requeue on
the warning signal (each ends with one finished run, every epoch recorded once), and a
job killed behind the app's back shows as lost."""
import os
import subprocess
from pathlib import Path

import pytest
from conftest import TINY, app_until, engine, wait_until, write_lab

from engine import launch as executors
from engine.core import rundir as rd
from engine.report.overview import runs_table
from engine.runs.detached import resume_detached
from tui.app import RotundaApp

# cifarnet keeps a job's training to seconds on two shared cores; most of a job's time
# is the interpreter and torch starting
SLURM = "[lab]\nexecutor = \"slurm\"\n\n" + TINY.replace(
    "epochs = 4", "epochs = 3\nmodel = \"cifarnet\"").replace(
    "synthetic_train = 320", "synthetic_train = 128").replace(
    "synthetic_test = 160", "synthetic_test = 64") + """
[sweep.lrs]
title = "Two learning rates"
base = "scratch"
axes = { lr = [0.001, 0.002] }
"""


@pytest.fixture
def lab(slurm_cluster, tmp_path):
    path = write_lab(tmp_path, SLURM)
    yield path
    # whatever a failed test left in the queue must not hold the node for the next
    ours = [r.status.get("job_id") for r in rd.list_runs(tmp_path / "runs")]
    ours = [j for j in ours if j]
    if ours:
        subprocess.run(["scancel", *ours], capture_output=True)


def slurm(*args) -> str:
    got = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, f"{args}: {got.stderr}"
    return got.stdout.strip()


def job_state(job: str) -> str:
    return slurm("squeue", "-h", "--states=all", "-j", job, "-o", "%T|%r")


wait_for = wait_until  # the one helper, conftest.py


@pytest.fixture
def node_full(slurm_cluster):
    """A job holding every CPU of the node, so that the next jobs stay PENDING
    (Resources) until the test lets go (scancel)."""
    job = slurm("sbatch", "--parsable", f"--cpus-per-task={os.cpu_count()}",
                "--output=/dev/null", "--wrap", "sleep 600")
    wait_for(lambda: job_state(job).startswith("RUNNING"), "the blocking job to run")
    yield job
    subprocess.run(["scancel", job], capture_output=True)


def only_run(runs_dir: Path, exp: str = "scratch") -> rd.Run:
    runs = rd.list_runs(runs_dir, exp)
    assert len(runs) == 1, runs
    return runs[0]


def launch(lab: Path, name: str = "scratch", *sets) -> Path:
    args = ["launch", name, "--yes", "--config", lab]
    for s in sets:
        args += ["--set", s]
    out = engine(*args, check=True).stdout
    return Path(out.split(" as ", 1)[1].split(" (early output", 1)[0])


def state_cell(run_dir: Path) -> str:
    """The State cell of `engine status`'s table for one run, as the CLI builds it."""
    table = runs_table([rd.load_run(run_dir)])
    return table.rows[0][0]


def epochs_recorded(run_dir: Path) -> list[int]:
    return [m["epoch"] for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "epoch"]


def test_cli_launch_pending_then_running_then_done(lab, node_full):
    first = launch(lab)
    second = launch(lab)
    status = rd.read_json(first / rd.STATUS)
    assert status["executor"] == "slurm" and status["job_id"] and status["state"] == "queued"
    # the node is full: Slurm's own word, in the CLI's table
    wait_for(lambda: "PENDING (Resources)" in state_cell(first), "PENDING (Resources)")
    out = engine("status", "--config", lab, check=True).stdout
    assert "queued PENDING (Resources)" in out and out.count("queued PENDING (") == 2, out
    # cancelling a pending job: scancel, and the run that never started says so
    got = engine("cancel", str(second), "--config", lab, check=True).stdout
    assert "scancel" in got
    assert rd.load_run(second).state == "cancelled"
    assert rd.read_json(second / rd.STATUS)["error"] == "cancelled while pending"
    slurm("scancel", node_full)
    wait_for(lambda: "RUNNING on localhost" in state_cell(first)
             or rd.load_run(first).raw_state == "done", "the job to run")
    wait_for(lambda: rd.load_run(first).raw_state in rd.FINAL_STATES, "the run to end")
    run = rd.load_run(first)
    assert run.state == "done", rd.read_json(first / rd.STATUS)
    assert run.status["job_id"] == status["job_id"] and run.status["host"] == "localhost"
    assert epochs_recorded(first) == [1, 2, 3]
    assert state_cell(first) == "done"  # a finished run's cell: no squeue, no job text


def test_sweep_points_run_as_jobs(lab):
    out = engine("sweep", "lrs", "--detach", "--config", lab, check=True).stdout
    assert "launched sweep lrs" in out
    runs = rd.list_runs(lab.parent / "runs", "lrs")
    assert len(runs) == 2  # both points queued at once, each its own job
    jobs = {r.status["job_id"] for r in runs}
    assert len(jobs) == 2 and all(r.status["executor"] == "slurm" for r in runs)
    wait_for(lambda: all(r.raw_state in rd.FINAL_STATES
                         for r in rd.list_runs(lab.parent / "runs", "lrs")), "both points")
    runs = rd.list_runs(lab.parent / "runs", "lrs")
    assert [r.state for r in runs] == ["done", "done"]
    points = sorted(rd.read_config(r.path)["point"] for r in runs)
    assert points == ["lr=0.001", "lr=0.002"], points
    table = engine("compare", "lrs", "--config", lab, check=True).stdout
    assert "0.001" in table and "0.002" in table


def test_scancel_ends_a_running_run_cancelled(lab):
    # long enough that the cancel lands mid-run on a quiet machine too (30 epochs of
    # cifarnet can end in 14 s, between two polls)
    run_dir = launch(lab, "scratch", "epochs=2000")
    wait_for(lambda: (rd.read_json(run_dir / rd.STATUS) or {}).get("epoch", 0) >= 1,
             "the first epoch")
    job = rd.read_json(run_dir / rd.STATUS)["job_id"]
    got = engine("cancel", str(run_dir), "--config", lab, check=True).stdout
    assert f"scancel {job}" in got
    wait_for(lambda: rd.load_run(run_dir).raw_state in rd.FINAL_STATES, "the run to end")
    run = rd.load_run(run_dir)
    assert run.state == "cancelled" and run.status["error"].startswith("cancelled in epoch")
    assert "cancelled by signal 15" in (run_dir / rd.LOG).read_text()


def requeued_and_done(run_dir: Path, job: str) -> rd.Run:
    """Wait for the job to be pending again and for the run to end. Slurm holds a
    requeued job for cred_expire + 1 s (16 s on the test cluster, tests/slurm.py) so that
    slurmd has forgotten the killed instance: releasing it sooner (StartTime=now) loses
    the restart ("Job N already killed, do not launch batch job")."""
    wait_for(lambda: job_state(job).startswith("PENDING"), "the job to be pending again")
    assert rd.load_run(run_dir).raw_state == "queued"  # it stopped for the requeue
    try:
        wait_for(lambda: rd.load_run(run_dir).raw_state in rd.FINAL_STATES,
                 "the run to end", interval=1.0)
    except AssertionError as exc:  # say what Slurm made of the job, for the next diagnosis
        raise AssertionError(f"{exc}; squeue: {job_state(job)!r}; "
                             f"{slurm('scontrol', 'show', 'job', job)}") from None
    return rd.load_run(run_dir)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("how", ["scontrol requeue", "warning signal"])
def test_requeue_resumes_with_every_epoch_once(lab, how):
    run_dir = launch(lab, "scratch", "epochs=4")
    wait_for(lambda: (rd.read_json(run_dir / rd.STATUS) or {}).get("epoch", 0) >= 1,
             "the first epoch")
    job = rd.read_json(run_dir / rd.STATUS)["job_id"]
    if how == "scontrol requeue":  # the cluster requeues it (an admin, a preemption)
        slurm("scontrol", "requeue", job)
    else:  # what --signal=B:USR1@warning_s sends before the time limit
        slurm("scancel", "--batch", "--signal=USR1", job)
    run = requeued_and_done(run_dir, job)
    assert run.state == "done", run.status
    assert run.status["job_id"] == job and run.status["restarts"] == 1
    assert epochs_recorded(run_dir) == [1, 2, 3, 4]
    steps = [m["step"] for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "step"]
    assert steps == sorted(set(steps))  # no step recorded twice either
    log = (run_dir / rd.LOG).read_text()
    assert "the job is requeued and resumes from there" in log and "resume: from epoch" in log
    assert (rd.read_json(run_dir / rd.SUMMARY) or {}).get("epochs") == 4


@pytest.mark.timeout(900)
def test_job_killed_behind_the_apps_back_is_lost_and_resumes_as_a_job(lab):
    run_dir = launch(lab, "scratch", "epochs=4")
    wait_for(lambda: (rd.read_json(run_dir / rd.STATUS) or {}).get("epoch", 0) >= 1,
             "the first epoch")
    job = rd.read_json(run_dir / rd.STATUS)["job_id"]
    slurm("scancel", "--batch", "--signal=KILL", job)  # no SIGTERM: the run records nothing
    wait_for(lambda: executors.load_run(run_dir).state == "lost", "lost")
    assert rd.load_run(run_dir).raw_state == "running"
    assert "lost" in engine("status", "--config", lab, check=True).stdout
    # the app's resume (r): a new job for the same run directory, from its last.pt
    resume_detached(run_dir, lab.parent / "runs")
    assert rd.read_json(run_dir / rd.STATUS)["job_id"] != job
    wait_for(lambda: rd.load_run(run_dir).raw_state in rd.FINAL_STATES, "the resumed run")
    assert rd.load_run(run_dir).state == "done"
    assert epochs_recorded(run_dir) == [1, 2, 3, 4]


async def test_app_launches_a_job_and_shows_slurms_state(lab, node_full):
    from test_app import cell_texts, runs_of, select_experiment

    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        await select_experiment(pilot, app, "scratch")
        await pilot.press("enter")
        await app_until(pilot, lambda: runs_of(app, "scratch"), "the scratch run")
        row = runs_of(app, "scratch")[0]
        assert rd.read_json(Path(row.key) / rd.STATUS)["executor"] == "slurm"
        await app_until(pilot, lambda: runs_of(app, "scratch")[0].job == "PENDING (Resources)",
                        "its job PENDING (Resources)")
        await pilot.press("2")
        runs = app.query_one("#runs-table")
        await app_until(pilot, lambda: "PENDING (Resources)" in cell_texts(runs, row.key)[0],
                        "PENDING (Resources) in the runs table")
        assert cell_texts(runs, row.key)[0] == "queued PENDING (Resources)"
        slurm("scancel", node_full)
        await app_until(pilot, lambda: runs_of(app, "scratch")[0].state == "done", "it done")
        assert cell_texts(runs, row.key)[0] == "done"
