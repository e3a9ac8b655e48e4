"""Launching detached: the app and the CLI queue runs, sweeps and resumes in the
background through the lab's executor, so that a run outlives its launcher. No torch."""
from __future__ import annotations

from pathlib import Path

from engine import launch
from engine.core import rundir as rd
from engine.core.config import load
from engine.runs.create import create_chain, prepare_sweep


def _batch(config):
    """The executor, when it is a batch system that takes each run as its own job."""
    executor = launch.get(config.lab.executor)
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
        job, out = None, None
        for _, run_dir, _ in create_chain(config, name, overrides, runs_dir, with_deps, run_id):
            job, out = batch.submit_run(config.lab, run_dir, runs_dir, config.root,
                                        [job] if job else [])
        return run_id, out
    # made here, not in the detached process: the launch takes its ticket before it returns
    return run_id, launch.get(config.lab.executor).submit_made(
        lambda identity: [run_dir for _, run_dir, _ in create_chain(
            config, name, overrides, runs_dir, with_deps, run_id, identity)],
        runs_dir, config.root, run_id)


def launch_sweep_detached(config, name: str, overrides: list[str], runs_dir: Path) -> Path:
    if batch := _batch(config):  # dependencies one job each; the points job arrays
        jobs, out = {}, runs_dir / ".launch"
        chains, points = prepare_sweep(config, name, overrides, runs_dir)
        for run_dir, after in chains:
            jobs[run_dir], out = batch.submit_run(
                config.lab, run_dir, runs_dir, config.root, [jobs[after]] if after else [])
        for after, run_dirs in _grouped(points).items():
            out = batch.submit_array(config.lab, run_dirs, runs_dir, config.root,
                                     [jobs[after]] if after else [])
        return out
    argv = _engine_argv("sweep", name, config, runs_dir, overrides)
    return launch.get(config.lab.executor).submit(argv, runs_dir, config.root,
                                           f"sweep-{name}-{rd.new_run_id()}")


def _grouped(points: list[tuple[Path, Path | None]]) -> dict:
    """The points by the run they wait for: one array each (a point with its own wait
    would hold back the others, and an array has one dependency for all its tasks)."""
    out: dict = {}
    for run_dir, after in points:
        out.setdefault(after, []).append(run_dir)
    return out


def resume_detached(run_dir: Path, runs_dir: Path) -> Path:
    run = rd.load_run(run_dir)
    executor = launch.of(run.status) if run else launch.current()
    if run and hasattr(executor, "submit_run"):  # the same job entry resumes it
        meta = rd.read_config(run_dir)
        config_path = Path(meta.get("config_file", ""))
        lab = load(config_path).lab if config_path.is_file() else None
        return executor.submit_run(lab, Path(run_dir), runs_dir, Path(run_dir))[1]
    return executor.submit(["resume", str(run_dir), "--runs-dir", str(runs_dir), "--quiet"],
                           runs_dir, Path(run_dir), f"resume-{Path(run_dir).name}")


