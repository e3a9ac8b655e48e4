"""Kill anywhere, resume exactly (issue #16): a CPU run is SIGKILLed at twenty random
moments over its life (start-up, mid-epoch, between epochs; two of them injected halfway
through a checkpoint write and halfway through a metrics line), resumed after each; it
must end equal, bit for bit, to an uninterrupted run with the same seed. A BYOL run
(random views on the device, a momentum target) is killed three times to the same end."""
import json
import math
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import TINY, engine, env, wait_until, write_lab

from engine.core import rundir as rd

EPOCHS = 12
# step and epoch records without their clocks: what must be equal
CLOCKS = {"images_per_s", "epoch_s", "gpu_mem_peak_mb", "cpu_cores", "rss_peak_mb"}


# cifarnet on 128 images: a second an epoch, so that the kills, not start-up, dominate
LAB = (TINY.replace("epochs = 4", f"epochs = {EPOCHS}\nmodel = \"cifarnet\"")
       .replace("synthetic_train = 320", "synthetic_train = 128")
       .replace("synthetic_test = 160", "synthetic_test = 64")
       .replace("log_every = 2", "log_every = 1")) + """
[experiment.byol]
title = "BYOL"
task = "byol"
byol_hidden = 64
knn_every = 1
epochs = 5
"""


def lab(tmp_path: Path, epochs: int = EPOCHS) -> Path:
    return write_lab(tmp_path, LAB.replace(f"epochs = {EPOCHS}\n", f"epochs = {epochs}\n", 1))


def start(*args, fault: str = "") -> subprocess.Popen:
    e = env()
    if fault:
        e["ROTUNDA_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def the_run(cfg: Path, exp: str, exclude: set) -> Path:
    runs = [r.path for r in rd.list_runs(cfg.parent / "runs", exp) if r.path not in exclude]
    return runs[0] if runs else None


def segments(run_dir: Path) -> int:
    """How many processes have reached training (each logs its model line once)."""
    try:
        return (run_dir / rd.LOG).read_text().count(" model: ")
    except FileNotFoundError:
        return 0


def checkpointed(run_dir: Path) -> int:
    return (rd.read_json(run_dir / rd.STATUS) or {}).get("epoch", 0)


def wait(pred, what: str):
    """conftest's wait_until, polled finely: a kill should land close to its step."""
    return wait_until(pred, what, interval=0.02)


def steps_in(run_dir: Path, epoch: int) -> int:
    """How many step records of `epoch` metrics.jsonl holds."""
    return sum(1 for m in rd.read_jsonl(run_dir / rd.METRICS)
               if m.get("kind") == "step" and m.get("epoch") == epoch)


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


def same(a, b, where="") -> None:
    """Equal to the bit: every tensor, number and string of two checkpoints."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), where


def kill_and_resume(cfg: Path, exp: str, epochs: int, plan: list[str], startup: set,
                    rng: random.Random) -> tuple[Path, Path, list[int]]:
    """An uninterrupted run, then one killed once for each entry of `plan` (a fault to
    inject, or "" for a SIGKILL from outside) and resumed after each; kill i waits for
    epoch i * (epochs - 2) / len(plan) to be checkpointed, then strikes at a random moment
    then for a random number of step records (1 up to an epoch's worth) of the next epoch
    to be written, and strikes (mid-epoch, evaluation, a checkpoint): kills land on
    recorded progress, not on the clock; those in `startup` strike as soon as the process
    is started. The last kill waits for epoch epochs - 2 at the latest, so the run cannot
    end first; if it does, the test says so."""
    engine("run", exp, "--config", cfg, check=True)
    ref = the_run(cfg, exp, set())
    steps_per = steps_in(ref, 1)
    run_dir, at = None, []
    for i, fault in enumerate(plan):
        seen = segments(run_dir) if run_dir else 0
        proc = (start("resume", run_dir, "--config", cfg, fault=fault) if run_dir
                else start("run", exp, "--config", cfg))
        run_dir = run_dir or wait(lambda: the_run(cfg, exp, {ref}), "the run's directory")
        if fault:  # armed in this process: it kills itself halfway through that write
            assert proc.wait(timeout=120) == -signal.SIGKILL, fault
        else:
            if i not in startup:
                target = i * (epochs - 2) // len(plan)
                k = rng.randint(1, steps_per)
                wait(lambda d=run_dir, n=seen, t=target, p=proc:
                     (segments(d) > n and checkpointed(d) >= t) or p.poll() is not None,
                     f"kill {i}: epoch {target} checkpointed by a new segment")
                wait(lambda d=run_dir, t=target, k=k, p=proc:
                     steps_in(d, checkpointed(d) + 1) >= k or checkpointed(d) > t
                     or p.poll() is not None,
                     f"kill {i}: step {k} of the epoch after {target} recorded")
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL, \
                f"kill {i}: the run ended (exit {proc.returncode}) before it was killed; " \
                f"kills so far at epochs {at}"
        at.append(checkpointed(run_dir))
    assert start("resume", run_dir, "--config", cfg).wait(timeout=300) == 0
    print(f"{exp}: epoch reached at each kill: {at}")
    assert rd.load_run(run_dir).state == "done"
    every_file_parses(run_dir)
    got = records(run_dir)
    assert [m["epoch"] for m in got if m["kind"] == "epoch"] == list(range(1, epochs + 1))
    assert got == records(ref)  # every step and epoch record, once, with the same figures
    for name in ("last.pt", "best.pt"):  # weights, optimiser, EMA, the task's own state
        same(torch.load(run_dir / "checkpoints" / name, weights_only=True),
             torch.load(ref / "checkpoints" / name, weights_only=True), name)
    if (ref / "predictions.csv").exists():  # a classifier's; a pretext run has none
        assert (run_dir / "predictions.csv").read_text() == \
            (ref / "predictions.csv").read_text()
    return ref, run_dir, at


# (kills, the two injected ones' places, start-up kills, epochs): the full twenty over 12
# epochs behind `-m full` (nightly, on demand); by default six over 8 that keep every
# kind of kill
SIZES = [pytest.param(20, (4, 11), 3, EPOCHS, marks=pytest.mark.full, id="twenty"),
         pytest.param(6, (2, 4), 1, 8, id="six")]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("KILLS, injected, n_startup, epochs", SIZES)
def test_twenty_kills_then_bitwise_equal_to_an_uninterrupted_run(tmp_path, KILLS, injected,
                                                                  n_startup, epochs):
    rng = random.Random(16)
    # twenty kills (six by default): two injected halfway through a checkpoint write and
    # halfway through a metrics line, three (one) in start-up, the rest at random steps
    plan = ["" for _ in range(KILLS)]
    plan[injected[0]], plan[injected[1]] = "kill:checkpoint:1", "kill:metrics:3"
    startup = set(rng.sample([i for i in range(1, KILLS) if not plan[i]], n_startup))
    _, run_dir, at = kill_and_resume(lab(tmp_path, epochs), "rot", epochs, plan, startup, rng)
    # spread over the run, not bunched at its start (epochs // 2 at twenty kills)
    assert len(set(at)) >= min(KILLS, epochs) // 2, at
    log = (run_dir / rd.LOG).read_text()
    resumed = log.count("resume: from epoch") + log.count("resume: no checkpoint")
    assert KILLS - len(startup) <= resumed <= KILLS  # a start-up kill can precede the line


@pytest.mark.timeout(600)
def test_a_two_view_method_with_a_momentum_target_resumes_bitwise_too(tmp_path):
    """BYOL: kornia's random views, the momentum target and its k-NN monitor."""
    kill_and_resume(lab(tmp_path), "byol", 5, ["", "kill:checkpoint:2", ""], set(),
                    random.Random(17))
