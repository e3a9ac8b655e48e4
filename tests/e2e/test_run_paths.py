"""Run references typed at the CLI (issue #23): a run directory given by its path works
wherever it lives, for resume, diff, rerun, status, gallery and export; names and run
ids still resolve inside the runs folder only."""
import json
import os
import shutil
import signal
import subprocess
import sys

from conftest import engine, env, wait_until, write_lab

from engine.core import rundir as rd


def _wait_for_epoch(run_dir, epoch, proc):
    """Until status.json records `epoch` done; fails at once if the run ends first."""
    def reached():
        status = rd.read_json(run_dir / rd.STATUS) or {}
        if (status.get("epoch") or 0) >= epoch:
            return status
        assert proc.poll() is None, f"the run ended before epoch {epoch}: {status}"
    return wait_until(reached, f"epoch {epoch} in {run_dir / rd.STATUS}")


def test_a_run_kept_outside_the_runs_folder_resumes_diffs_and_reruns_by_its_path(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    config = write_lab(lab)
    run_dir = lab / "runs" / "scratch" / "20261203-000000-0001"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "scratch", "--config", config,
         "--run-id", run_dir.name, "--set", "epochs=3", "--quiet"],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_epoch(run_dir, 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    # kept elsewhere (a scratch disk, a colleague's copy); the lab's own runs folder is empty
    scratch = tmp_path / "scratch" / "scratch"
    scratch.mkdir(parents=True)
    moved = scratch / run_dir.name
    shutil.move(run_dir, moved)
    other = tmp_path / "other"
    other.mkdir()
    args = ("--config", write_lab(other))

    status = engine("status", moved, *args, cwd=other, check=True).stdout
    assert "lost" in status and moved.name in status
    done = engine("resume", moved, "--quiet", *args, cwd=other)
    assert done.returncode == 0, done.stderr
    epochs = [m["epoch"] for m in rd.read_jsonl(moved / rd.METRICS) if m["kind"] == "epoch"]
    assert epochs == [1, 2, 3]  # resumed where it stopped, each epoch once

    rerun = engine("rerun", moved, "--quiet", *args, cwd=other)
    assert rerun.returncode == 0, rerun.stderr
    new = [d for d in scratch.iterdir() if d != moved]
    assert len(new) == 1 and json.loads((new[0] / rd.STATUS).read_text())["state"] == "done"

    diff = engine("diff", moved, new[0], *args, cwd=other)
    assert diff.returncode == 0 and "Traceback" not in diff.stderr, diff.stderr
    exported = engine("export", moved, *args, cwd=other, check=True).stdout
    assert (moved / "curves.png").is_file() and "curves.png" in exported
    # a name or an id still means the lab's own runs folder
    by_id = engine("resume", moved.name, *args, cwd=other)
    assert by_id.returncode == 2 and "no run matches" in by_id.stderr
    assert len(by_id.stderr.strip().splitlines()) == 1
