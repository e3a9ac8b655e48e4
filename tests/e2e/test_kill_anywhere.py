"""Kill anywhere, resume exactly (issue #16): a CPU run is SIGKILLed at twenty random
moments over its life (start-up, mid-epoch, between epochs; two of them injected halfway
through a checkpoint write and halfway through a metrics line), resumed after each; it must end equal, bit for bit, to an uninterrupted run with the same seed."""
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import TINY, engine, env

from engine import rundir as rd

EPOCHS = 12
KILLS = 20
# step and epoch records without their clocks: what must be equal
CLOCKS = {"images_per_s", "epoch_s", "gpu_mem_peak_mb"}


def lab(tmp_path: Path) -> Path:
    path = tmp_path / "experiments.toml"
    # cifarnet on 128 images: a second an epoch, so that the kills, not start-up, dominate
    path.write_text(TINY.replace("epochs = 4", f"epochs = {EPOCHS}\nmodel = \"cifarnet\"")
                    .replace("synthetic_train = 320", "synthetic_train = 128")
                    .replace("synthetic_test = 160", "synthetic_test = 64")
                    .replace("log_every = 2", "log_every = 1"))
    return path


def start(*args, fault: str = "") -> subprocess.Popen:
    e = env()
    if fault:
        e["ROTUNDA_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def the_run(cfg: Path, exclude: set) -> Path:
    runs = [r.path for r in rd.list_runs(cfg.parent / "runs", "rot") if r.path not in exclude]
    return runs[0] if runs else None


def segments(run_dir: Path) -> int:
    """How many processes have reached training (each logs its model line once)."""
    try:
        return (run_dir / rd.LOG).read_text().count(" model: ")
    except FileNotFoundError:
        return 0


def checkpointed(run_dir: Path) -> int:
    return (rd.read_json(run_dir / rd.STATUS) or {}).get("epoch", 0)


def wait(pred, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("timed out")


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in CLOCKS}
            for m in rd.read_jsonl(run_dir / rd.METRICS)]


def every_file_parses(run_dir: Path) -> None:
    for line in (run_dir / rd.METRICS).read_text().splitlines():
        json.loads(line)
    for name in (rd.STATUS, rd.SUMMARY):
        assert rd.read_json(run_dir / name) is not None, name
    tomllib.loads((run_dir / "config.toml").read_text())
    for ckpt in (run_dir / "checkpoints").glob("*.pt"):
        torch.load(ckpt, weights_only=True)
    leftovers = [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]
    assert not leftovers, leftovers


def same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.timeout(900)
def test_twenty_kills_then_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    cfg = lab(tmp_path)
    engine("run", "rot", "--config", cfg, check=True)
    ref = the_run(cfg, set())
    epoch_s = statistics.median(m["epoch_s"] for m in rd.read_jsonl(ref / rd.METRICS)
                                if m["kind"] == "epoch")
    rng = random.Random(16)
    # twenty kills: kill i waits for epoch i * (EPOCHS - 2) / KILLS to be checkpointed,
    # then strikes at a random moment of the next epoch's length (mid-epoch, evaluation, a
    # checkpoint); three strike in start-up instead, and two are injected halfway through
    # a checkpoint write and halfway through a metrics line
    plan = ["" for _ in range(KILLS)]
    plan[4], plan[11] = "kill:checkpoint:1", "kill:metrics:3"
    startup = set(rng.sample([i for i in range(1, KILLS) if not plan[i]], 3))
    run_dir, at = None, []
    for i, fault in enumerate(plan):
        seen = segments(run_dir) if run_dir else 0
        proc = (start("resume", run_dir, "--config", cfg, fault=fault) if run_dir
                else start("run", "rot", "--config", cfg))
        run_dir = run_dir or wait(lambda: the_run(cfg, {ref}))
        if fault:  # armed in this process: it kills itself halfway through that write
            assert proc.wait(timeout=120) == -signal.SIGKILL, fault
        else:
            if i not in startup:
                target = i * (EPOCHS - 2) // KILLS
                wait(lambda: (segments(run_dir) > seen and checkpointed(run_dir) >= target)
                     or proc.poll() is not None)
            time.sleep(rng.uniform(0, epoch_s))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL, f"the run ended first (kills at {at})"
        at.append(checkpointed(run_dir))
    assert start("resume", run_dir, "--config", cfg).wait(timeout=300) == 0
    print(f"epoch reached at each kill: {at}")
    assert len(set(at)) >= EPOCHS // 2, at  # spread over the run, not bunched at its start

    assert rd.load_run(run_dir).state == "done"
    every_file_parses(run_dir)
    got = records(run_dir)
    assert [m["epoch"] for m in got if m["kind"] == "epoch"] == list(range(1, EPOCHS + 1))
    assert got == records(ref)  # every step and epoch record, once, with the same figures
    for name in ("last.pt", "best.pt"):
        a = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        b = torch.load(ref / "checkpoints" / name, weights_only=True)
        same_tensors(a["model"], b["model"])
    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
    b = torch.load(ref / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
    for sa, sb in zip(a["state"].values(), b["state"].values()):
        same_tensors(sa, sb)
    log = (run_dir / rd.LOG).read_text()
    resumed = log.count("resume: from epoch") + log.count("resume: no checkpoint")
    assert KILLS - len(startup) <= resumed <= KILLS  # a start-up kill can precede the line
    assert (run_dir / "predictions.csv").read_text() == (ref / "predictions.csv").read_text()
