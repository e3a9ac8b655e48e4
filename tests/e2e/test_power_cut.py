"""Power cut (issue #23): a rename is durable only after the file and then its directory
are fsynced. A real run is SIGKILLed at the moment a power cut hurts most, its new
status.json or last.pt written and fsynced but not yet renamed over the old one: the old
file is whole, the new one is whole beside it, and a resume ends the run as if nothing
happened. strace then shows the order of the calls a run makes: fsync of the temporary
file, rename, fsync of the directory, for every file it replaces."""
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import TINY, engine, env

from engine.core import rundir as rd

EPOCHS = 3  # a kill at epoch 2's checkpoint, and one epoch after it


def lab(tmp_path):
    cfg = tmp_path / "experiments.toml"
    cfg.write_text(TINY.replace("log_every = 2", "log_every = 5")
                   .replace("epochs = 4", f"epochs = {EPOCHS}"))
    return cfg


def killed_before_rename(cfg, name: str, n: int):
    """`engine run scratch` with a SIGKILL before the nth rename over `name`."""
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "scratch", "--config",
                           str(cfg)], env={**env(), "ROTUNDA_FAULT": f"kill:rename-{name}:{n}"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    (run_dir,) = [r.path for r in rd.list_runs(cfg.parent / "runs", "scratch")]
    return run_dir


def resumed_to_the_end(cfg, run_dir):
    engine("resume", run_dir, "--config", cfg, check=True)
    assert rd.read_json(run_dir / rd.STATUS)["state"] == "done"
    assert not [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]
    epochs = [m["epoch"] for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "epoch"]
    assert epochs == list(range(1, EPOCHS + 1))


@pytest.mark.timeout(900)
def test_killed_between_a_checkpoints_fsync_and_its_rename(tmp_path):
    cfg = lab(tmp_path)
    run_dir = killed_before_rename(cfg, "last.pt", 2)
    ckpts = run_dir / "checkpoints"
    # the old checkpoint is whole and still says epoch 1; the new one, whole, is beside it
    assert torch.load(ckpts / "last.pt", weights_only=True)["epoch"] == 1
    (tmp,) = ckpts.glob(".last.pt.*.tmp")
    assert torch.load(tmp, weights_only=True)["epoch"] == 2
    # epoch 2's metrics line was made durable before the checkpoint that counts it
    assert [m["epoch"] for m in rd.read_jsonl(run_dir / rd.METRICS)
            if m["kind"] == "epoch"] == [1, 2]
    assert rd.read_json(run_dir / rd.STATUS)["state"] == "running"
    resumed_to_the_end(cfg, run_dir)
    assert "resume: from epoch 1" in (run_dir / rd.LOG).read_text()


@pytest.mark.timeout(900)
def test_killed_between_status_jsons_fsync_and_its_rename(tmp_path):
    cfg = lab(tmp_path)
    run_dir = killed_before_rename(cfg, rd.STATUS, 4)
    old = rd.read_json(run_dir / rd.STATUS)  # strict JSON: the whole previous version
    assert old is not None and old["state"] in ("queued", "running")
    (tmp,) = run_dir.glob(f".{rd.STATUS}.*.tmp")
    assert rd.read_json(tmp) is not None  # the new version, whole, never renamed
    resumed_to_the_end(cfg, run_dir)


@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_every_replaced_file_is_fsynced_renamed_then_its_directory_fsynced(tmp_path):
    cfg = lab(tmp_path)
    trace = tmp_path / "trace.txt"
    subprocess.run(["strace", "-f", "-y", "-qq", "-o", str(trace),
                    "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
                    sys.executable, "-m", "engine", "run", "scratch", "--config", str(cfg),
                    "--set", "epochs=2"], env=env(), check=True, capture_output=True,
                   timeout=600)
    runs = str(tmp_path / "runs")
    by_pid: dict[str, list[str]] = {}
    for line in trace.read_text().splitlines():
        pid, _, call = line.partition(" ")
        by_pid.setdefault(pid, []).append(call.strip())
    renamed = set()
    for calls in by_pid.values():
        for i, call in enumerate(calls):
            m = re.match(r'rename(?:at2?)?\(.*?"([^"]+)",.*?"([^"]+)"', call)
            if not m or runs not in m.group(2):
                continue
            tmp, target = m.groups()
            before, after = calls[i - 1] if i else "", calls[i + 1] if i + 1 < len(calls) else ""
            assert before.startswith("fsync(") and tmp.split("/")[-1] in before, (call, before)
            folder = target.rsplit("/", 1)[0]
            assert after.startswith("fsync(") and f"<{folder}>" in after, (call, after)
            renamed.add(target.rsplit("/", 1)[-1])
    # status, the resolved config, both checkpoints, the summary and predictions
    assert {rd.STATUS, "config.toml", "last.pt", "best.pt", rd.SUMMARY} <= renamed, renamed
