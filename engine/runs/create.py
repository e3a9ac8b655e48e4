"""Making runs: a run directory queued with its resolved settings, a dependency chain's
links, a sweep's or ablation's points, and the checkpoint a run starts from. No torch."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from engine import launch
from engine.core import rundir as rd
from engine.core.config import Config, dependency_chain, needs
from engine.core.errors import ConfigError, RunError
from engine.core.settings import (
    FromExperiment,
    FromFile,
    Settings,
    WeightsFile,
    apply_overrides,
    settings_dict,
    settings_from_dict,
)
from engine.launch.local import ticket


def resolve_settings(config: Config, name: str, overrides: list[str]) -> Settings:
    s = apply_overrides(config.experiment(name).settings, overrides)
    if s.nodes > 1 and config.lab.executor != "slurm":
        raise RunError(f"{name}: nodes = {s.nodes} spreads one run over several machines, "
                       f'which needs executor = "slurm" in [lab] (this lab\'s is '
                       f'"{config.lab.executor}"); gpus = N runs N processes on this one')
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
               point: str | None = None, waiting_for: str | None = None,
               identity: dict | None = None) -> tuple[Path, Settings]:
    """The run directory, queued, owned by this process (or by the process `identity`
    names: a detached launch's). A sweep's runs are filed under the sweep's name, each
    with its point's label. `waiting_for`: what it waits for before it can want a slot
    (None: nothing, it queues at once)."""
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
    _queued(run_dir, name, s, waiting_for, identity)
    return run_dir, s


def _queued(run_dir: Path, name: str, s: Settings, waiting_for: str | None = None,
            identity: dict | None = None) -> None:
    _enqueue(run_dir, experiment=name, run_id=run_dir.name,
             **(identity or launch.current().identity()),
             created=rd.now_iso(), started=None, ended=None, error=None, epoch=0,
             epochs=s.epochs, waiting_for=waiting_for)


def _enqueue(run_dir: Path, **fields) -> None:
    """Queue the run: the next ticket (its place in the queue, engine/launch/local.py) is
    written into status.json with `fields` while the ticket's lock is held. queued_at, the
    wall time, is for people."""
    with ticket(run_dir.parent.parent) as n:
        rd.update_status(run_dir, state="queued", ticket=n, queued_at=time.time(), **fields)


def create_chain(config: Config, name: str, overrides: list[str], runs_dir: Path,
                 with_deps: bool = False, run_id: str | None = None,
                 identity: dict | None = None) -> list[tuple[str, Path, Settings]]:
    """`name`'s run directory, queued, and with with_deps one before it for each
    dependency lacking a successful run; all made at once, so a viewer sees the whole
    chain. Checks first that the first link can start."""
    chain = dependency_chain(config, name) if with_deps else [name]
    todo = [n for n in chain[:-1] if rd.latest_done(runs_dir, n) is None] + [name]
    first = resolve_settings(config, todo[0], overrides)  # validates the overrides too
    dep = needs(first)
    if not (dep and any(r.state in rd.LIVE_STATES for r in launch.list_runs(runs_dir, dep))):
        resolve_init(config, todo[0], first, runs_dir)  # fail now, before creating anything
    # a link after the first waits for the one before it (the queue does not wait for it)
    return [(n, *create_run(config, n, overrides, runs_dir, run_id if n == name else None,
                            waiting_for=f"experiment {todo[i - 1]}" if i else None,
                            identity=identity))
            for i, n in enumerate(todo)]


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


def prepare_sweep(config: Config, name: str, overrides: list[str], runs_dir: Path
                  ) -> tuple[list[tuple[Path, Path | None]], list[tuple[Path, Path | None]]]:
    """For a batch executor: a queued run directory for each missing dependency's chain,
    and for each point not done yet; each with the run it must wait for (None: none)."""
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
    return out, [(run_dir, last.get(needs(s))) for *_, run_dir, s in created]


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


