import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Small enough for two CPU cores, large enough that both tasks learn above chance.
TINY = """
[defaults]
dataset = "synthetic"
synthetic_train = 320
synthetic_test = 160
image_size = 16
epochs = 4
batch_size = 32
optimizer = "adam"
lr = 0.002
weight_decay = 0.0
warmup_epochs = 0
log_every = 2
device = "cpu"

[experiment.rot]
title = "Rotation"
group = "Tiny"
task = "rotation"
expect = { metric = "test_acc_at_best", value = 0.5 }

[experiment.ft]
title = "Fine-tune from rotation"
group = "Tiny"
init = "rot"
expect = { metric = "test_acc_at_best", value = 0.4 }

[experiment.scratch]
title = "Scratch"
group = "Tiny"

[experiment.probe]
title = "Probe"
group = "Tiny"
init = "rot"
train_layers = ["fc"]

[compare.summary]
title = "Tiny summary"
kind = "summary"
experiments = ["rot", "ft", "scratch"]

[compare.side]
title = "Tiny side by side"
experiments = ["ft", "scratch"]
"""


def _poller(predicate, what: str, timeout: float):
    """Asks `predicate` once a call: its value when truthy, else None; from `timeout`
    seconds on, fails naming `what` was awaited and the last value seen."""
    end = time.monotonic() + timeout

    def once():
        got = predicate()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                 f"last value seen: {got!r}")
        return None
    return once


def wait_until(predicate, what: str, timeout: float = 300.0, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy, and return that; after
    `timeout` seconds fail with a message naming `what` was awaited and the last value
    seen. Tests wait on progress (a state, an epoch, a line), bounded by this."""
    once = _poller(predicate, what, timeout)
    while not (got := once()):
        time.sleep(interval)
    return got


async def app_until(pilot, predicate, what: str, timeout: float = 300.0,
                    interval: float = 0.1):
    """wait_until for a Textual Pilot test: between tries `pilot.pause(interval)`, so that
    the app runs on meanwhile; returns and fails as wait_until does."""
    once = _poller(predicate, what, timeout)
    while not (got := once()):
        await pilot.pause(interval)
    return got


def write_lab(folder: Path, text: str = TINY) -> Path:
    """`folder`/experiments.toml holding `text` (the tiny lab unless told); its path."""
    path = Path(folder) / "experiments.toml"
    path.write_text(text)
    return path


def env() -> dict:
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("CUDA_VISIBLE_DEVICES", None)
    return e


def engine(*args, cwd=None, timeout=300, check=False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"engine {args} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write_lab(tmp_path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One real chain, trained once for the session: rot -> ft, and scratch."""
    root = tmp_path_factory.mktemp("trained")
    cfg = write_lab(root)
    engine("run", "ft", "--with-deps", "--config", cfg, check=True)
    engine("run", "scratch", "--config", cfg, check=True)
    return cfg


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node Slurm for the session (tests/slurm.py: installed with apt when
    missing, started without systemd, stopped at the end); SLURM_CONF is exported to the
    tests, the engine processes and the app. Skips, with the reason, where Slurm cannot
    be had (not root, no apt)."""
    import slurm

    root = tmp_path_factory.mktemp("slurm")
    try:
        conf = slurm.start(root)
    except slurm.Unavailable as exc:
        pytest.skip(f"no Slurm here: {exc}")
    old = os.environ.get("SLURM_CONF")
    os.environ.update(conf)
    yield root
    slurm.stop(root)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e trains real runs or drives the app: marked slow, so that
    `python -m pytest -m "not slow"` is the quick loop and plain `python -m pytest` is all."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.slow)
