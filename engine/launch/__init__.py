"""Where runs execute. One executor per backend (`local.py`: detached processes on this
machine and flock slots); a run records in status.json which executor ran it and its job
id, and "is it alive" and "cancel" are asked of that executor.

The app and the CLI launch through the functions at the bottom: each starts
`python -m engine ...` as a detached job, so the run outlives its launcher. No torch.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol

from .. import rundir as rd
from ..errors import RunError

# name -> module holding `EXECUTOR`; a new backend is one file and one line here.
EXECUTORS = {"local": "engine.launch.local", "slurm": "engine.launch.slurm"}
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


def _batch(config):
    """The executor, when it is a batch system that takes each run as its own job."""
    executor = get(config.lab.executor)
    return executor if hasattr(executor, "submit_run") else None


def _engine_argv(command: str, name: str, config, runs_dir: Path, overrides: list[str]):
    argv = [command, name, "--config", str(config.path), "--runs-dir", str(runs_dir), "--quiet"]
    for o in overrides:
        argv += ["--set", o]
    return argv


def launch_detached(config, name: str, overrides: list[str], runs_dir: Path,
                    with_deps: bool = False) -> tuple[str, Path]:
    """Queue `name` (with its missing dependencies first, if asked) in the background.
    Returns the run id it will have and the file that holds its early output."""
    run_id = rd.new_run_id()
    if batch := _batch(config):  # the run directories are made here, one job each
        from ..runner import create_chain
        job, out = None, None
        for _, run_dir, _ in create_chain(config, name, overrides, runs_dir, with_deps, run_id):
            job, out = batch.submit_run(config.lab, run_dir, runs_dir, config.root,
                                        [job] if job else [])
        return run_id, out
    argv = _engine_argv("run", name, config, runs_dir, overrides) + ["--run-id", run_id]
    if with_deps:
        argv.append("--with-deps")
    return run_id, get(config.lab.executor).submit(argv, runs_dir, config.root, run_id)


def launch_sweep_detached(config, name: str, overrides: list[str], runs_dir: Path) -> Path:
    if batch := _batch(config):  # every point its own job, after its dependency's
        from ..runner import prepare_sweep
        jobs, out = {}, runs_dir / ".launch"
        for run_dir, after in prepare_sweep(config, name, overrides, runs_dir):
            jobs[run_dir], out = batch.submit_run(
                config.lab, run_dir, runs_dir, config.root, [jobs[after]] if after else [])
        return out
    argv = _engine_argv("sweep", name, config, runs_dir, overrides)
    return get(config.lab.executor).submit(argv, runs_dir, config.root,
                                           f"sweep-{name}-{rd.new_run_id()}")


def resume_detached(run_dir: Path, runs_dir: Path) -> Path:
    run = rd.load_run(run_dir)
    executor = of(run.status) if run else current()
    if run and hasattr(executor, "submit_run"):  # the same job entry resumes it
        from ..config import load
        meta = rd.read_config(run_dir)
        config_path = Path(meta.get("config_file", ""))
        lab = load(config_path).lab if config_path.is_file() else None
        return executor.submit_run(lab, Path(run_dir), runs_dir, Path(run_dir))[1]
    return executor.submit(["resume", str(run_dir), "--runs-dir", str(runs_dir), "--quiet"],
                           runs_dir, Path(run_dir), f"resume-{Path(run_dir).name}")


def cancel(run_dir: Path) -> str:
    run = rd.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory")
    if run.state not in rd.LIVE_STATES:
        raise RunError(f"{run.experiment}/{run.run_id} is {run.state}, not running")
    return of(run.status).cancel({**run.status, "run_dir": str(run.path)}) + \
        f" ({run.experiment}/{run.run_id})"
