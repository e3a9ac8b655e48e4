"""Running runs in this process: wait for the dependency and a slot, then train; chains,
sweeps, a batch job's entry, rerun and resume.

No torch here: `train` (engine.train.execute.execute, handed in by the CLI) is called
only once a run holds its slot, so a queued run costs no torch import.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from engine import launch
from engine.core import rundir as rd
from engine.core.config import Config, load, needs
from engine.core.errors import RunError
from engine.core.settings import Settings, apply_overrides
from engine.runs.create import (
    _create_points,
    _enqueue,
    _points,
    _queued,
    _recorded,
    create_chain,
    resolve_init,
    write_config,
)

# train(run_dir, settings, init_from=..., resume=..., echo=...) -> final state
Train = Callable[..., str]


class _Cancelled(Exception):
    pass


def _raise_cancel(signum, frame):
    raise _Cancelled()


def _wait_to_start(config: Config, s: Settings, runs_dir: Path, run_dir: Path,
                   echo: bool) -> None:
    """A run launched while its dependency is still queued or running waits for it
    (before taking a slot, which the dependency may need); then for a slot."""
    dep = needs(s)
    while dep and rd.latest_done(runs_dir, dep) is None and any(
            r.state in rd.LIVE_STATES for r in launch.list_runs(runs_dir, dep)):
        rd.update_status(run_dir, waiting_for=f"experiment {dep}")
        time.sleep(0.5)
    on_wait = (lambda n: print(f"queued: waiting for a free slot ({n} run(s) ahead)",
                               flush=True)) if echo else None
    launch.current().wait_for_slot(_slots(config, s), runs_dir, run_dir, s.device, on_wait)


def _slots(config: Config, s: Settings) -> dict:
    """The queue's limits, and how many GPUs the run needs (`gpus`)."""
    return {"per_gpu": config.lab.runs_per_gpu, "cpu": config.lab.runs_on_cpu,
            "gpus": s.gpus}


def run_queued(config: Config, run_dir: Path, name: str, s: Settings, overrides: list[str],
               runs_dir: Path, queue: bool = True, echo: bool = True, *,
               train: Train) -> str:
    """Wait for the dependency and a slot, resolve the init checkpoint, train. Returns the
    final state."""
    old = signal.signal(signal.SIGTERM, _raise_cancel)
    old_int = signal.signal(signal.SIGINT, _raise_cancel)
    try:
        if queue:
            _wait_to_start(config, s, runs_dir, run_dir, echo)
        init_from = resolve_init(config, name, s, runs_dir)
    except _Cancelled:
        rd.update_status(run_dir, state="cancelled", ended=rd.now_iso(),
                         error="cancelled while queued")
        return "cancelled"
    except RunError as exc:
        rd.update_status(run_dir, state="failed", ended=rd.now_iso(), error=str(exc))
        with open(run_dir / rd.LOG, "a", encoding="utf-8") as f:
            f.write(f"failed: {exc}\n")
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
    write_config(run_dir, config, name, s, overrides, init_from)
    try:
        return train(run_dir, s, init_from=init_from, echo=echo)
    finally:
        launch.current().release_slot()


def _run_one(config: Config, label: str, name: str, run_dir: Path, s: Settings,
             overrides: list[str], runs_dir: Path, queue: bool, echo: bool,
             train: Train) -> str:
    if echo:
        print(f"{label}: {run_dir}", flush=True)
    try:
        return run_queued(config, run_dir, name, s, overrides, runs_dir, queue, echo,
                          train=train)
    except RunError:  # recorded in the run's status and log
        return "failed"


def run_experiment(config: Config, name: str, overrides: list[str], runs_dir: Path,
                   with_deps: bool = False, run_id: str | None = None, queue: bool = True,
                   echo: bool = True, *, train: Train) -> list[tuple[Path, str]]:
    """Run `name` (and, with with_deps, each dependency lacking a successful run, first).
    The same overrides apply to every run in the chain; a link that does not finish
    cancels the links after it."""
    created = create_chain(config, name, overrides, runs_dir, with_deps, run_id)
    results = []
    for i, (n, run_dir, s) in enumerate(created):
        state = _run_one(config, f"run {n}", n, run_dir, s, overrides, runs_dir, queue, echo,
                         train)
        results.append((run_dir, state))
        if state != "done":
            for _, later, _ in created[i + 1:]:
                rd.update_status(later, state="cancelled", ended=rd.now_iso(),
                                 error=f"{n} ended {state}; not started")
            break
    return results


def run_sweep(config: Config, name: str, overrides: list[str], runs_dir: Path,
              queue: bool = True, echo: bool = True, *,
              train: Train) -> list[tuple[str, Path | None, str]]:
    """Every point of a sweep or an ablation, one after another; a point already done
    with the same resolved settings is skipped. `overrides` apply on top of every point."""
    points = _points(config, name, overrides)
    # Points that start from an experiment's checkpoint (a rotation-pretrained base, an
    # ablation's "rotation" component) get that experiment run first when it has no
    # successful run, with the same command-line overrides, as `run --with-deps` does.
    for dep in dict.fromkeys(needs(s) for *_, s in points if needs(s)):
        if rd.latest_done(runs_dir, dep) is None:
            if echo:
                print(f"{name}: running dependency {dep} first", flush=True)
            if run_experiment(config, dep, list(overrides), runs_dir, with_deps=True,
                              queue=queue, echo=echo, train=train)[-1][1] != "done":
                raise RunError(f"dependency {dep} did not finish; the sweep needs its checkpoint")
    results, created = _create_points(config, name, points, runs_dir, echo)
    for label, base, all_overrides, run_dir, s in created:
        state = _run_one(config, f"{name} [{label}]", base, run_dir, s, all_overrides,
                         runs_dir, queue, echo, train)
        results[label] = (label, run_dir, state)
    return [results[label] for label, *_ in points]


def run_job(run_dir: Path, echo: bool = True, *, train: Train) -> str:
    """A run directory prepared by the launcher, as its batch job runs it: the first
    start, or after a requeue a resume from last.pt (metrics trimmed to it). A job that
    starts again after its run ended done does nothing."""
    run = rd.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory (no {rd.STATUS})")
    if run.raw_state == "done":
        return "done"
    executor = launch.current()
    ranks = getattr(executor, "rendezvous", dict)()  # one task of several (srun's)
    os.environ.update(ranks)
    if ranks.get("RANK", "0") != "0":  # rank 0 keeps the books and tells it how to start
        return train(run_dir, _recorded(run_dir)[1], init_from="", resume=False, echo=False)
    meta, s = _recorded(run_dir)
    resume = bool(run.status.get("started"))
    rd.update_status(run_dir, state="queued", error=None, ended=None, **executor.identity())
    config_path = Path(meta.get("config_file", ""))
    init_from = meta.get("init_from", "")
    if not resume:
        if not config_path.is_file():
            rd.update_status(run_dir, state="failed", ended=rd.now_iso(),
                             error=f"{config_path} is gone")
            return "failed"
        config = load(config_path)
        name = meta.get("experiment") or run_dir.parent.name
        try:
            return run_queued(config, run_dir, name, s, list(meta.get("overrides", [])),
                              run_dir.parent.parent, echo=echo, train=train)
        except RunError:  # recorded in the run's status and log
            return "failed"
    return train(run_dir, s, init_from=init_from, resume=True, echo=echo)


def run_jobs(run_dirs: list[Path], echo: bool = True, *,
             train: Train) -> list[tuple[Path, str]]:
    """run_job over a chain made by a launcher, in order: a link that does not finish
    cancels the links after it, as run_experiment does."""
    results = []
    for i, run_dir in enumerate(run_dirs):
        state = run_job(run_dir, echo, train=train)
        results.append((run_dir, state))
        if state != "done":
            for later in run_dirs[i + 1:]:
                rd.update_status(later, state="cancelled", ended=rd.now_iso(),
                                 error=f"{run_dir.parent.name} ended {state}; not started")
            break
    return results


def _train_in_slot(run_dir: Path, meta: dict, s: Settings, resume: bool, queue: bool,
                   echo: bool, train: Train) -> str:
    """Wait for a slot (under the recorded experiments.toml's limits), then train."""
    config_path = Path(meta.get("config_file", ""))
    config = load(config_path) if config_path.is_file() else None
    executor = launch.current()
    if resume:  # a resume queues again, behind the runs waiting now
        _enqueue(run_dir, error=None, waiting_for=None, **executor.identity())
    if queue and config is not None:
        executor.wait_for_slot(_slots(config, s), run_dir.parent.parent, run_dir, s.device)
    try:
        return train(run_dir, s, init_from=meta.get("init_from", ""), resume=resume,
                     echo=echo)
    finally:
        executor.release_slot()


def resumable(run_dir: Path) -> rd.Run:
    """The run, or RunError saying why it cannot be resumed."""
    run = launch.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory (no {rd.STATUS})")
    if run.state in rd.LIVE_STATES:
        raise RunError(f"{run_dir} is still {run.state} (job {run.status.get('job_id')})")
    if run.state == "done":
        raise RunError(f"{run_dir} is already done")
    if run.state == rd.DAMAGED:
        raise RunError(f"{run_dir} is damaged ({run.status['error']}): not resumed; its "
                       "other files are untouched")
    return run


def reshape(run_dir: Path, gpus: int | None = None,
            nodes: int | None = None) -> tuple[dict, Settings]:
    """The run's recorded settings with `gpus` (processes per machine) and `nodes`
    (machines) changed for the rest of it, written to its config.toml and said in its log.
    batch_size is the global batch, so the recipe stays the same."""
    meta, s = _recorded(run_dir)
    changes = {k: v for k, v in (("gpus", gpus), ("nodes", nodes))
               if v is not None and v != getattr(s, k)}
    if not changes:
        return meta, s
    before = ", ".join(f"{k} = {getattr(s, k)}" for k in changes)
    s = apply_overrides(s, [f"{k}={v}" for k, v in changes.items()])
    meta["settings"].update(changes)
    rd.atomic_write_text(run_dir / rd.CONFIG, rd.dump_toml(
        {"run": {k: v for k, v in meta.items() if k != "settings"},
         "settings": meta["settings"]}))
    after = ", ".join(f"{k} = {v}" for k, v in changes.items())
    with open(run_dir / rd.LOG, "a", encoding="utf-8") as f:
        f.write(f"resume: {after} from here (was {before})\n")
    return meta, s


def rerun_run(run_dir: Path, queue: bool = True, echo: bool = True, *,
              train: Train) -> tuple[Path, str]:
    """A new run beside `run_dir` with exactly its recorded settings, seed and starting
    checkpoint; the trainer logs, a line each, how code, environment or data differ."""
    if rd.load_run(run_dir) is None:
        raise RunError(f"{run_dir} is not a run directory (no {rd.STATUS})")
    meta, s = _recorded(run_dir)
    init_from = meta.get("init_from", "")
    if init_from and not Path(init_from).exists():
        raise RunError(f"{run_dir.name} started from {init_from}, which no longer exists")
    new = run_dir.parent / rd.new_run_id()
    new.mkdir()
    run = {k: v for k, v in meta.items() if k != "settings"}
    run.update(run_id=new.name, rerun_of=str(run_dir))
    rd.atomic_write_text(new / rd.CONFIG, rd.dump_toml({"run": run,
                                                        "settings": meta["settings"]}))
    _queued(new, meta.get("experiment", run_dir.parent.name), s)
    if echo:
        print(f"rerun of {run_dir.parent.name}/{run_dir.name}: {new}", flush=True)
    return new, _train_in_slot(new, meta, s, False, queue, echo, train)


def resume_run(run_dir: Path, queue: bool = True, echo: bool = True,
               gpus: int | None = None, nodes: int | None = None, *, train: Train) -> str:
    """Continue a stopped run from its last checkpoint in this process; `gpus` and `nodes`
    change how many processes train it from here (reshape)."""
    resumable(run_dir)
    if (nodes or _recorded(run_dir)[1].nodes) > 1:
        raise RunError(f"{run_dir.name} trains over several machines: this process cannot "
                       "run it; resume it with --nodes 1, or as a Slurm job")
    meta, s = reshape(run_dir, gpus, nodes)
    return _train_in_slot(run_dir, meta, s, True, queue, echo, train)
