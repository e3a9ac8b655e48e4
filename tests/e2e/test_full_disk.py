"""A full disk (issue #16): the runs folder sits on a small tmpfs the test mounts (root),
or, where mounting is impossible, the engine's write-failure injection makes a
checkpoint write fail with ENOSPC. The run ends `failed` with one "disk full" line, the
last checkpoint and every earlier metrics line are intact, `engine status` still works,
and `resume` continues once there is room again."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, engine, env, wait_until, write_lab

from engine.core import rundir as rd

LAB = TINY.replace("epochs = 4", "epochs = 6\nmodel = \"cifarnet\"").replace(
    "synthetic_train = 320", "synthetic_train = 128").replace(
    "synthetic_test = 160", "synthetic_test = 64")


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MiB tmpfs (two checkpoints of cifarnet with Adam take about 32), or None."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        yield None
        return
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.timeout(600)
def test_full_disk_fails_in_one_line_keeps_everything_and_resumes(small_disk, tmp_path):
    root = small_disk or tmp_path
    cfg = write_lab(root, LAB)
    e = env()
    if small_disk is None:  # no mount here: the third checkpoint write finds the disk full
        e["ROTUNDA_FAULT"] = "full:checkpoint:3"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "scratch", "--config",
                             str(cfg)], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    runs = root / "runs"

    def two_epochs_or_ended():
        found = rd.list_runs(runs, "scratch")
        return proc.poll() is not None or (found and found[0].status.get("epoch", 0) >= 2)
    wait_until(two_epochs_or_ended, "epoch 2 in status.json (or the run to end)",
               interval=0.05)
    run_dir = rd.list_runs(runs, "scratch")[0].path
    filler = None
    if small_disk is not None:
        proc.send_signal(signal.SIGSTOP)  # a still moment to take the metrics and fill up
        before = (run_dir / rd.METRICS).read_bytes()
        filler = fill(small_disk)
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    if small_disk is None:
        before = b""  # the injected failure strikes at a known write, not at a moment
    assert proc.returncode != 0
    status = rd.read_json(run_dir / rd.STATUS)
    assert status["state"] == "failed", status
    assert status["error"].startswith("disk full: no space left writing "), status["error"]
    assert "\n" not in status["error"] and "Traceback" not in err, err
    assert (run_dir / rd.METRICS).read_bytes().startswith(before)  # earlier lines intact
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] >= 1
    kept = last["epoch"]
    # while the disk is still full, the lab still reads it
    listed = engine("status", "--config", cfg, check=True).stdout
    assert "failed" in listed
    assert not [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]

    if filler is not None:
        filler.unlink()  # room again
    engine("resume", run_dir, "--config", cfg, check=True)
    assert rd.load_run(run_dir).state == "done"
    epochs = [m["epoch"] for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "epoch"]
    assert epochs == [1, 2, 3, 4, 5, 6]
    assert f"resume: from epoch {kept} checkpoint" in (run_dir / rd.LOG).read_text()
