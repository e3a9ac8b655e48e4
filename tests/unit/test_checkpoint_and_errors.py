"""Checkpoints are written and read in one place, never run code, and every mistake a user
can cause ends as one line with its exit code: config, data, device, a checkpoint, a run
that cannot be found."""
import pickle

import pytest
import torch
from conftest import engine, write_lab

from engine.core import rundir as rd
from engine.core.errors import (
    ConfigError,
    DataError,
    DeviceError,
    InitError,
    RotundaError,
    RunError,
)
from engine.train import checkpoint
from engine.train.optim import Plateau


def test_train_state_round_trips(tmp_path):
    state = checkpoint.TrainState({"w": torch.ones(2)}, {"state": {}, "param_groups": []}, 3,
                                  0.25, 2, Plateau(0.1, 1, 0.2), ema={"n_averaged": torch.tensor(4)})
    state.save(tmp_path / "last.pt")
    back = checkpoint.TrainState.load(tmp_path / "last.pt")
    assert (back.epoch, back.best_value, back.best_epoch) == (3, 0.25, 2)
    assert back.plateau == Plateau(0.1, 1, 0.2) and torch.equal(back.model["w"], torch.ones(2))
    assert int(back.ema["n_averaged"]) == 4
    assert not list(tmp_path.glob(".*.tmp"))  # written to a temporary name, then renamed


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/rotunda-pwned-by-checkpoint", "w"))


def test_a_torn_or_hostile_checkpoint_is_one_line_and_runs_nothing(tmp_path):
    good = tmp_path / "good.pt"
    checkpoint.save_weights(good, {"w": torch.ones(3)}, 1)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(good.read_bytes()[:40])
    hostile = tmp_path / "hostile.pt"
    with open(hostile, "wb") as f:
        pickle.dump({"model": _Payload()}, f)
    target = rd.Path("/tmp/rotunda-pwned-by-checkpoint")
    target.unlink(missing_ok=True)
    for path in (torn, hostile, tmp_path / "missing.pt"):
        with pytest.raises(RunError) as err:
            checkpoint.read(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not target.exists()
    assert torch.equal(checkpoint.read(good)["model"]["w"], torch.ones(3))


def test_every_user_error_carries_exit_code_2():
    for cls in (ConfigError, RunError, DataError, InitError, DeviceError):
        assert issubclass(cls, RotundaError) and cls("x").exit_code == 2


def test_cli_errors_are_one_line_without_traceback(tiny_config, tmp_path):
    cases = [
        (["gallery", "nosuchrun"], "no run matches 'nosuchrun'"),
        (["resume", "nosuchrun"], "no run matches 'nosuchrun'"),
        (["cancel", "nosuchrun"], "no run matches 'nosuchrun'"),
        (["compare", "nosuch"], "no comparison or sweep named 'nosuch'"),
        (["sweep", "nosuch"], "no sweep or ablation named 'nosuch'"),
        (["run", "nosuch"], "no experiment named 'nosuch'"),
        (["run", "scratch", "--set", "epochs"], "--set epochs: expected KEY=VALUE"),
    ]
    for args, message in cases:
        proc = engine(*args, "--config", tiny_config)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_gallery_of_a_run_whose_data_is_gone_is_one_line(tmp_path):
    """A DataError raised outside a run (here by gallery) reaches the user as one line."""
    run = tmp_path / "runs" / "scratch" / "20261125-000000-aaaa"
    (run / "checkpoints").mkdir(parents=True)
    rd.atomic_write_json(run / rd.STATUS, {"state": "done"})
    rd.atomic_write_text(run / rd.CONFIG, rd.dump_toml({"run": {}, "settings": {
        "dataset": "cifar10", "download": False, "data_dir": str(tmp_path / "gone")}}))
    checkpoint.save_weights(run / "checkpoints" / "best.pt", {}, 1)
    proc = engine("gallery", run, "--config", write_lab(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: CIFAR-10 not found in {tmp_path / 'gone'}")
    assert proc.stderr.count("\n") == 1


def test_atomic_writes_fsync_the_file_then_its_directory(tmp_path, monkeypatch):
    """Power cut (issue #23): status.json and checkpoints are durable only when the file
    is fsynced before the rename and its directory after it."""
    import os
    import stat

    from engine.core import rundir as rd

    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(a, b):
        calls.append("rename")
        real_replace(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    rd.atomic_write_json(tmp_path / rd.STATUS, {"state": "running"})
    assert calls == ["file", "rename", "dir"]
    calls.clear()
    checkpoint.save({"w": 1}, tmp_path / "last.pt")
    assert calls == ["file", "rename", "dir"]
