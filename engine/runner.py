"""Creating and running runs: the run directory, dependencies, the queue, sweeps, resume.

Imports no torch (the app and launchers come through here); training is imported only
once a run holds its slot.
"""
from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

from . import launch
from . import rundir as rd
from .config import Config, dependency_chain, load, needs
from .errors import ConfigError, RunError
from .launch.local import ticket
from .settings import (FromExperiment, FromFile, Settings, WeightsFile, apply_overrides,
                       settings_dict, settings_from_dict)


def resolve_settings(config: Config, name: str, overrides: list[str]) -> Settings:
    s = apply_overrides(config.experiment(name).settings, overrides)
    return dataclasses.replace(s, data_dir=str(_under(config, s.data_dir)))


def _under(config: Config, path: str) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else config.root / p).resolve()


def resolve_init(config: Config, name: str, s: Settings, runs_dir: Path) -> str:
    """The checkpoint or weights file a run starts from ("" for none, or for published
    weights by name, which the run finds in torch's cache)."""
    if isinstance(s.init, (FromFile, WeightsFile)):
        path = _under(config, s.init.path)
        if not path.exists():
            what = "checkpoint" if isinstance(s.init, FromFile) else "weights file"
            raise RunError(f"{name}: init {what} {path} does not exist")
        return str(path)
    if not isinstance(s.init, FromExperiment):
        return ""
    dep = s.init.experiment
    run = rd.latest_done(runs_dir, dep)
    if run is None:
        raise RunError(f"{name} starts from {dep}'s {s.init_checkpoint} checkpoint, but "
                       f"{dep} has no successful run in {runs_dir}: run it first "
                       f"(python -m engine run {dep}) or add --with-deps")
    ckpt = run.path / rd.CHECKPOINTS / f"{s.init_checkpoint}.pt"
    if not ckpt.exists():
        raise RunError(f"{name}: {ckpt} is missing from {dep}'s latest successful run")
    return str(ckpt)


def write_config(run_dir: Path, config: Config, name: str, s: Settings, overrides: list[str],
                 init_from: str) -> None:
    old = rd.read_config(run_dir)
    expect = config.experiment(name).expect  # the forecast's target (engine/forecast.py)
    run = {"experiment": name, "run_id": run_dir.name, "config_file": str(config.path),
           "init_from": init_from, "overrides": list(overrides),
           "sweep": old.get("sweep"), "point": old.get("point"),
           "target": {"metric": expect.metric, "value": expect.value} if expect else None}
    rd.atomic_write_text(run_dir / rd.CONFIG, rd.dump_toml(
        {"run": run, "settings": settings_dict(s)}))


def create_run(config: Config, name: str, overrides: list[str], runs_dir: Path,
               run_id: str | None = None, sweep: str | None = None,
               point: str | None = None, waiting_for: str | None = None
               ) -> tuple[Path, Settings]:
    """The run directory, queued, owned by this process. A sweep's runs are filed under
    the sweep's name, each with its point's label. `waiting_for`: what it waits for before
    it can want a slot (None: nothing, it queues at once)."""
    s = resolve_settings(config, name, overrides)
    run_dir = Path(runs_dir) / (sweep or name) / (run_id or rd.new_run_id())
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        raise RunError(f"run directory {run_dir} already exists") from None
    if sweep:
        rd.atomic_write_text(run_dir / rd.CONFIG, rd.dump_toml(
            {"run": {"sweep": sweep, "point": point}}))
    write_config(run_dir, config, name, s, overrides, "")
    _queued(run_dir, name, s, waiting_for)
    return run_dir, s


def _queued(run_dir: Path, name: str, s: Settings, waiting_for: str | None = None) -> None:
    _enqueue(run_dir, experiment=name, run_id=run_dir.name, **launch.current().identity(),
             created=rd.now_iso(), started=None, ended=None, error=None, epoch=0,
             epochs=s.epochs, waiting_for=waiting_for)


def _enqueue(run_dir: Path, **fields) -> None:
    """Queue the run: the next ticket (its place in the queue, engine/launch/local.py) is
    written into status.json with `fields` while the ticket's lock is held. queued_at, the
    wall time, is for people."""
    with ticket(run_dir.parent.parent) as n:
        rd.update_status(run_dir, state="queued", ticket=n, queued_at=time.time(), **fields)


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
            r.state in rd.LIVE_STATES for r in rd.list_runs(runs_dir, dep)):
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
               runs_dir: Path, queue: bool = True, echo: bool = True) -> str:
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
    from .train import execute  # torch is imported here, once the run may start
    try:
        return execute(run_dir, s, init_from=init_from, echo=echo)
    finally:
        launch.current().release_slot()


def _run_one(config: Config, label: str, name: str, run_dir: Path, s: Settings,
             overrides: list[str], runs_dir: Path, queue: bool, echo: bool) -> str:
    if echo:
        print(f"{label}: {run_dir}", flush=True)
    try:
        return run_queued(config, run_dir, name, s, overrides, runs_dir, queue, echo)
    except RunError:  # recorded in the run's status and log
        return "failed"


def create_chain(config: Config, name: str, overrides: list[str], runs_dir: Path,
                 with_deps: bool = False, run_id: str | None = None
                 ) -> list[tuple[str, Path, Settings]]:
    """`name`'s run directory, queued, and with with_deps one before it for each
    dependency lacking a successful run; all made at once, so a viewer sees the whole
    chain. Checks first that the first link can start."""
    chain = dependency_chain(config, name) if with_deps else [name]
    todo = [n for n in chain[:-1] if rd.latest_done(runs_dir, n) is None] + [name]
    first = resolve_settings(config, todo[0], overrides)  # validates the overrides too
    dep = needs(first)
    if not (dep and any(r.state in rd.LIVE_STATES for r in rd.list_runs(runs_dir, dep))):
        resolve_init(config, todo[0], first, runs_dir)  # fail now, before creating anything
    # a link after the first waits for the one before it (the queue does not wait for it)
    return [(n, *create_run(config, n, overrides, runs_dir, run_id if n == name else None,
                            waiting_for=f"experiment {todo[i - 1]}" if i else None))
            for i, n in enumerate(todo)]


def run_experiment(config: Config, name: str, overrides: list[str], runs_dir: Path,
                   with_deps: bool = False, run_id: str | None = None, queue: bool = True,
                   echo: bool = True) -> list[tuple[Path, str]]:
    """Run `name` (and, with with_deps, each dependency lacking a successful run, first).
    The same overrides apply to every run in the chain; a link that does not finish
    cancels the links after it."""
    created = create_chain(config, name, overrides, runs_dir, with_deps, run_id)
    results = []
    for i, (n, run_dir, s) in enumerate(created):
        state = _run_one(config, f"run {n}", n, run_dir, s, overrides, runs_dir, queue, echo)
        results.append((run_dir, state))
        if state != "done":
            for _, later, _ in created[i + 1:]:
                rd.update_status(later, state="cancelled", ended=rd.now_iso(),
                                 error=f"{n} ended {state}; not started")
            break
    return results


def run_sweep(config: Config, name: str, overrides: list[str], runs_dir: Path,
              queue: bool = True, echo: bool = True) -> list[tuple[str, Path | None, str]]:
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
                              queue=queue, echo=echo)[-1][1] != "done":
                raise RunError(f"dependency {dep} did not finish; the sweep needs its checkpoint")
    results, created = _create_points(config, name, points, runs_dir, echo)
    for label, base, all_overrides, run_dir, s in created:
        state = _run_one(config, f"{name} [{label}]", base, run_dir, s, all_overrides,
                         runs_dir, queue, echo)
        results[label] = (label, run_dir, state)
    return [results[label] for label, *_ in points]


def _points(config: Config, name: str, overrides: list[str]) -> list[tuple]:
    return [(label, base, point_overrides + list(overrides),
             resolve_settings(config, base, point_overrides + list(overrides)))
            for label, base, point_overrides in config.plan(name).points()]


def _create_points(config: Config, name: str, points: list[tuple], runs_dir: Path,
                   echo: bool) -> tuple[dict, list[tuple]]:
    """The points already done with the same settings, and a queued run directory for
    each other one."""
    by_point = rd.runs_by_point(runs_dir, name)
    results, created = {}, []
    for label, base, all_overrides, s in points:
        done = next((r for r in by_point.get(label, []) if r.raw_state == "done"
                     and _same_settings(r.path, s)), None)
        if done:
            results[label] = (label, done.path, "done")
            if echo:
                print(f"{name} [{label}]: already done in {done.path}", flush=True)
        else:
            created.append((label, base, all_overrides, *create_run(
                config, base, all_overrides, runs_dir, sweep=name, point=label,
                waiting_for=f"sweep {name}" if created else None)))
    return results, created


def prepare_sweep(config: Config, name: str, overrides: list[str],
                  runs_dir: Path) -> list[tuple[Path, Path | None]]:
    """For an executor that queues every run as its own job: a queued run directory for
    each point not done yet, and first for each missing dependency's chain; each with
    the run it must wait for (None: none)."""
    if config.plan(name) is None:
        raise RunError(f"no sweep or ablation named {name!r}")
    points = _points(config, name, overrides)
    out, last = [], {}
    for dep in dict.fromkeys(needs(s) for *_, s in points if needs(s)):
        if rd.latest_done(runs_dir, dep) is None:
            before = None
            for _, run_dir, _ in create_chain(config, dep, list(overrides), runs_dir, True):
                out.append((run_dir, before))
                before = run_dir
            last[dep] = before
    _, created = _create_points(config, name, points, runs_dir, echo=False)
    return out + [(run_dir, last.get(needs(s))) for *_, run_dir, s in created]


def run_job(run_dir: Path, echo: bool = True) -> str:
    """A run directory prepared by the launcher, as its batch job runs it: the first
    start, or after a requeue a resume from last.pt (metrics trimmed to it). A job that
    starts again after its run ended done does nothing."""
    run = rd.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory (no {rd.STATUS})")
    if run.raw_state == "done":
        return "done"
    meta, s = _recorded(run_dir)
    executor = launch.current()
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
                              run_dir.parent.parent, echo=echo)
        except RunError:  # recorded in the run's status and log
            return "failed"
    from .train import execute
    return execute(run_dir, s, init_from=init_from, resume=True, echo=echo)


def _same_settings(run_dir: Path, s: Settings) -> bool:
    try:
        return settings_from_dict(rd.read_config(run_dir).get("settings", {}), "") == s
    except ConfigError:  # written by an older version with other settings
        return False


def _recorded(run_dir: Path) -> tuple[dict, Settings]:
    meta = rd.read_config(run_dir)
    if not meta.get("settings"):
        raise RunError(f"{run_dir / rd.CONFIG} is missing or unreadable")
    return meta, settings_from_dict(meta["settings"], str(run_dir / rd.CONFIG))


def _train_in_slot(run_dir: Path, meta: dict, s: Settings, resume: bool, queue: bool,
                   echo: bool) -> str:
    """Wait for a slot (under the recorded experiments.toml's limits), then train."""
    config_path = Path(meta.get("config_file", ""))
    config = load(config_path) if config_path.is_file() else None
    executor = launch.current()
    if resume:  # a resume queues again, behind the runs waiting now
        _enqueue(run_dir, error=None, waiting_for=None, **executor.identity())
    if queue and config is not None:
        executor.wait_for_slot(_slots(config, s), run_dir.parent.parent, run_dir, s.device)
    from .train import execute
    try:
        return execute(run_dir, s, init_from=meta.get("init_from", ""), resume=resume,
                       echo=echo)
    finally:
        executor.release_slot()


def rerun_run(run_dir: Path, queue: bool = True, echo: bool = True) -> tuple[Path, str]:
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
    return new, _train_in_slot(new, meta, s, False, queue, echo)


def resume_run(run_dir: Path, queue: bool = True, echo: bool = True,
               gpus: int | None = None) -> str:
    """Continue a stopped run from its last checkpoint; `gpus` changes how many processes
    train it from here (batch_size is the global batch, so the recipe stays the same)."""
    run = rd.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory (no {rd.STATUS})")
    if run.state in rd.LIVE_STATES:
        raise RunError(f"{run_dir} is still {run.state} (job {run.status.get('job_id')})")
    if run.state == "done":
        raise RunError(f"{run_dir} is already done")
    if run.state == rd.DAMAGED:
        raise RunError(f"{run_dir} is damaged ({run.status['error']}): not resumed; its "
                       "other files are untouched")
    meta, s = _recorded(run_dir)
    if gpus is not None and gpus != s.gpus:
        before, s = s.gpus, apply_overrides(s, [f"gpus={gpus}"])
        meta["settings"]["gpus"] = gpus
        rd.atomic_write_text(run_dir / rd.CONFIG, rd.dump_toml(
            {"run": {k: v for k, v in meta.items() if k != "settings"},
             "settings": meta["settings"]}))
        with open(run_dir / rd.LOG, "a", encoding="utf-8") as f:
            f.write(f"resume: gpus = {gpus} from here (was {before})\n")
    return _train_in_slot(run_dir, meta, s, True, queue, echo)
