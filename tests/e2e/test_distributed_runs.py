"""One run over two processes (torch.distributed, gloo on the CPU) through the CLI, as a
user would start it: one run directory written by rank 0, one metrics stream, checkpoints
that a one-process run resumes from and starts from, and back. resnet20 keeps it quick
and has BatchNorm, whose statistics rank 0 hands to the other rank before evaluating."""
import subprocess
import sys

import tomllib
import torch
from conftest import engine, env, wait_until

from engine.core import rundir as rd

R20 = ["--set", "model=resnet20"]


def _only_run(cfg, exp="scratch", before=()):
    runs = [r for r in rd.list_runs(cfg.parent / "runs", exp) if r.path not in before]
    assert len(runs) == 1
    return runs[0]


def _lines(run_dir, kind):
    return [m for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == kind]


def test_a_two_process_run_is_one_run_that_learns_like_one_process(tiny_config):
    engine("run", "scratch", "--config", tiny_config, *R20, "--set", "gpus=2", check=True)
    two = _only_run(tiny_config)
    engine("run", "scratch", "--config", tiny_config, *R20, check=True)
    one = _only_run(tiny_config, before={two.path})

    status = rd.read_json(two.path / rd.STATUS)
    assert status["state"] == "done" and status["processes"] == 2 and status["error"] is None
    assert "processes" not in rd.read_json(one.path / rd.STATUS)  # 1 process: as before
    epochs = _lines(two.path, "epoch")
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]  # each epoch once, not once a rank
    assert [m["step"] for m in _lines(two.path, "step")] == list(range(2, 41, 2))
    for name in (rd.SUMMARY, rd.PREDICTIONS, "provenance.json", "checkpoints/best.pt"):
        assert (two.path / name).exists()
    assert len((two.path / rd.PREDICTIONS).read_text().splitlines()) == 161  # all 160 tests
    assert not list(two.path.rglob("*.tmp"))
    log = (two.path / rd.LOG).read_text()
    assert "x 2 processes (gloo; batches of 16 per process)" in log
    assert log.count("epoch 4/4:") == 1 and log.count("done:") == 1
    assert two.summary["best_epoch"] in (1, 2, 3, 4)
    # the checkpoint holds the plain model's weights, as a one-process run writes them
    ckpt = torch.load(two.path / "checkpoints" / "last.pt", weights_only=True)
    assert set(ckpt["model"]) == set(torch.load(one.path / "checkpoints" / "last.pt",
                                                weights_only=True)["model"])

    # the loss falls like the one-process run's (same recipe, same global batch)
    two_loss = [m["train_loss"] for m in epochs]
    one_loss = [m["train_loss"] for m in _lines(one.path, "epoch")]
    assert abs(two_loss[0] - one_loss[0]) < 0.25 * one_loss[0]
    assert two_loss[-1] < 0.85 * two_loss[0] and one_loss[-1] < 0.85 * one_loss[0]
    assert two.summary["test_acc_at_best"] > 0.2  # chance: 0.10


def test_a_cancelled_two_process_run_resumes_on_one_and_back(tiny_config):
    cmd = [sys.executable, "-m", "engine", "run", "scratch", "--config", str(tiny_config),
           *R20, "--set", "gpus=2", "--set", "epochs=5", "--quiet"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    runs = tiny_config.parent / "runs"

    def an_epoch_or_ended():
        found = rd.list_runs(runs, "scratch")
        return proc.poll() is not None or (found and _lines(found[0].path, "epoch"))
    wait_until(an_epoch_or_ended, "an epoch record in metrics.jsonl (or the run to end)")
    run = _only_run(tiny_config)
    assert engine("cancel", run.path, "--config", tiny_config, check=True).returncode == 0
    out, _ = proc.communicate(timeout=120)
    status = rd.read_json(run.path / rd.STATUS)
    assert status["state"] == "cancelled", out
    kept = [m["epoch"] for m in _lines(run.path, "epoch")]
    assert kept and kept[-1] < 5

    engine("resume", run.path, "--config", tiny_config, "--gpus", "1", "--now", check=True)
    assert rd.read_json(run.path / rd.STATUS)["state"] == "done"
    assert [m["epoch"] for m in _lines(run.path, "epoch")] == [1, 2, 3, 4, 5]
    steps = [m["step"] for m in _lines(run.path, "step")]
    assert steps == sorted(set(steps)) and steps[-1] == 50
    assert tomllib.loads((run.path / rd.CONFIG).read_text())["settings"]["gpus"] == 1
    log = (run.path / rd.LOG).read_text()
    assert "resume: gpus = 1 from here (was gpus = 2)" in log and "resume: from epoch" in log

    # and back: two processes start from the one-process run's weights
    best = run.path / "checkpoints" / "best.pt"
    engine("run", "scratch", "--config", tiny_config, *R20, "--set", "gpus=2",
           "--set", "epochs=1", "--set", f'init={{ file = "{best}" }}', check=True)
    again = _only_run(tiny_config, before={run.path})
    assert rd.read_json(again.path / rd.STATUS)["state"] == "done"
    assert f"init: weights from {best}" in (again.path / rd.LOG).read_text()
