"""Where runs execute. One executor per backend (`local.py`: detached processes on this
machine and flock slots); a run records in status.json which executor ran it and its job
id, and "is it alive" and "cancel" are asked of that executor.

Executors submit, report liveness and cancel; they never create runs (engine/runs/ does,
and launches through them). No torch.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol

from engine.core import rundir as rd
from engine.core.errors import RunError
from engine.core.registry import EXECUTORS

ENV = "ROTUNDA_EXECUTOR"  # set in a job's environment by the executor that submitted it


class Executor(Protocol):
    name: str

    def submit(self, argv: list[str], runs_dir: Path, cwd: Path, tag: str) -> Path:
        """Start `python -m engine ARGV` detached; returns the file with its early output."""

    def identity(self) -> dict:
        """What the calling process records in status.json: executor, job_id, host, ..."""

    def alive(self, status: dict) -> bool | None:
        """Whether the job behind a queued or running status still exists; None when it
        cannot be told from here (another host)."""

    def cancel(self, status: dict) -> str:
        """Ask the job to stop (it checkpoints and ends cancelled); returns what was done."""

    def wait_for_slot(self, slots: dict, runs_dir: Path, run_dir: Path, device: str,
                      on_wait=None) -> str:
        """Block until the run may start; returns the device slot taken."""

    def release_slot(self) -> None:
        """Give back the slot taken by wait_for_slot."""

    def stopping(self, signum: int) -> bool:
        """Asked by the trainer when a signal stops it: True when the job will run again
        (Slurm's warning signal or a requeue), so the run records queued, not cancelled."""


def get(name: str) -> Executor:
    if name not in EXECUTORS:
        raise RunError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
    return importlib.import_module(EXECUTORS[name]).EXECUTOR


def current() -> Executor:
    """The executor this process runs under."""
    return get(os.environ.get(ENV, "local"))


def of(status: dict) -> Executor:
    """The executor that ran the run behind `status` (older runs: local)."""
    return get(status.get("executor") or "local")


def is_alive(status: dict) -> bool | None:
    """None when it cannot be told here (another host, an executor this install lacks)."""
    if (status.get("executor") or "local") not in EXECUTORS:
        return None
    return of(status).alive(status)


def describe(status: dict) -> str | None:
    """What the executor itself says of a run's job ("PENDING (Resources)"), if it says."""
    if (status.get("executor") or "local") not in EXECUTORS:
        return None
    fn = getattr(of(status), "describe", None)
    return fn(status) if fn else None


def load_run(path: Path) -> rd.Run | None:
    """A run as its executor sees it: a live run whose job is gone reads "lost"."""
    return rd.load_run(path, alive=is_alive)


def list_runs(runs_dir: Path, experiment: str | None = None) -> list[rd.Run]:
    return rd.list_runs(runs_dir, experiment, alive=is_alive)


def scanner(runs_dir: Path) -> rd.RunScanner:
    return rd.RunScanner(runs_dir, alive=is_alive)


def cancel(run_dir: Path, array: bool = False) -> str:
    """Cancel the run; `array`: every point of the Slurm job array it is a task of."""
    run = load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory")
    if array:
        executor = of(run.status)
        if not hasattr(executor, "cancel_array"):
            raise RunError(f"{run.experiment}/{run.run_id} ran under the "
                           f"{executor.name} executor, which has no job arrays")
        return executor.cancel_array(run.status, run.path.parent.parent)
    if run.state not in rd.LIVE_STATES:
        raise RunError(f"{run.experiment}/{run.run_id} is {run.state}, not running")
    return of(run.status).cancel({**run.status, "run_dir": str(run.path)}) + \
        f" ({run.experiment}/{run.run_id})"
