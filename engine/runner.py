"""Creating runs: the run directory, the queue, dependencies, detached launches.

Imports no torch (the app launches through here); training is imported only once a run
holds its slot.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import rundir as rd
from .config import Config, ConfigError, Settings, apply_overrides, dependency_chain, is_path


class RunError(Exception):
    """A run that cannot start (a missing dependency, a clash); one line for the user."""


def resolve_settings(config: Config, name: str, overrides: list[str]) -> Settings:
    s = apply_overrides(config.experiment(name).settings, overrides)
    data_dir = Path(s.data_dir).expanduser()
    if not data_dir.is_absolute():
        data_dir = config.root / data_dir
    return dataclasses.replace(s, data_dir=str(data_dir.resolve()))


def resolve_init(config: Config, name: str, s: Settings, runs_dir: Path) -> str:
    """The checkpoint a run starts from: a path, or the latest successful run of the
    experiment named in `init`."""
    if not s.init:
        return ""
    if is_path(s.init):
        p = Path(s.init).expanduser()
        p = p if p.is_absolute() else config.root / p
        if not p.exists():
            raise RunError(f"{name}: init checkpoint {p} does not exist")
        return str(p.resolve())
    run = rd.latest_done(runs_dir, s.init)
    if run is None:
        raise RunError(f"{name} starts from {s.init}'s {s.init_checkpoint} checkpoint, but "
                       f"{s.init} has no successful run in {runs_dir}: run it first "
                       f"(python -m engine run {s.init}) or add --with-deps")
    ckpt = run.path / rd.CHECKPOINTS / f"{s.init_checkpoint}.pt"
    if not ckpt.exists():
        raise RunError(f"{name}: {ckpt} is missing from {s.init}'s latest successful run")
    return str(ckpt)


def write_config(run_dir: Path, config: Config, name: str, s: Settings, overrides: list[str],
                 init_from: str) -> None:
    old = read_run_meta(run_dir)
    run = {"experiment": name, "run_id": run_dir.name, "config_file": str(config.path),
           "init_from": init_from, "overrides": list(overrides),
           "sweep": old.get("sweep"), "point": old.get("point")}
    rd.atomic_write_text(run_dir / rd.CONFIG, rd.dump_toml(
        {"run": run, "settings": dataclasses.asdict(s)}))


def read_run_meta(run_dir: Path) -> dict:
    """config.toml's [run] and [settings] tables merged; {} if absent or unreadable."""
    from .config import tomllib
    try:
        data = tomllib.loads((Path(run_dir) / rd.CONFIG).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {**data.get("run", {}), "settings": data.get("settings", {})}


def create_run(config: Config, name: str, overrides: list[str], runs_dir: Path,
               run_id: str | None = None, sweep: str | None = None,
               point: str | None = None) -> tuple[Path, Settings]:
    """The run directory, queued, owned by this process. A sweep's runs are filed under
    the sweep's name, each with its point's label."""
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
    rd.atomic_write_json(run_dir / rd.STATUS, {
        "state": "queued", "experiment": name, "run_id": run_dir.name, "pid": os.getpid(),
        "pid_start": rd.process_start_time(os.getpid()), "host": rd.hostname(),
        "created": rd.now_iso(), "queued_at": time.time(), "started": None, "ended": None,
        "error": None,
        "epoch": 0, "epochs": s.epochs})
    return run_dir, s


def set_state(run_dir: Path, **fields) -> None:
    status = rd.read_json(run_dir / rd.STATUS) or {}
    status.update(fields)
    rd.atomic_write_json(run_dir / rd.STATUS, status)


# --------------------------------------------------------------------------- the queue
_held_slot = None  # the open lock file: the slot is ours until this process ends


def gpu_indices() -> list[str]:
    """GPUs this process may use, read without initialising CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v for v in visible.split(",") if v.strip()]
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver, no library: no GPUs
        return []


def acquire_slot(config: Config, runs_dir: Path, run_dir: Path, s: Settings,
                 on_wait=None) -> str:
    """Block until this run may start: queued runs start oldest first, at most
    runs_per_gpu per GPU (runs_on_cpu without one). Returns the device slot taken; a GPU
    slot pins the run to that GPU through CUDA_VISIBLE_DEVICES. The lock is released by
    the kernel when the process ends, however it ends."""
    global _held_slot
    gpus = [] if s.device == "cpu" else gpu_indices()
    kind = "gpu" if gpus else "cpu"
    slots = ([(g, i) for i in range(config.lab.runs_per_gpu) for g in gpus] if gpus
             else [("cpu", i) for i in range(config.lab.runs_on_cpu)])
    lock_dir = Path(runs_dir) / ".slots"
    lock_dir.mkdir(parents=True, exist_ok=True)
    set_state(run_dir, waiting_for=kind)
    told = False
    while True:
        mine = (rd.read_json(run_dir / rd.STATUS) or {}).get("queued_at", 0)
        ahead = [r for r in rd.list_runs(runs_dir)
                 if r.raw_state == "queued" and r.path != run_dir
                 and (r.status.get("queued_at", 0), r.run_id) < (mine, run_dir.name)
                 and r.status.get("waiting_for") == kind and r.state == "queued"]
        if not ahead:
            for dev, i in slots:
                f = open(lock_dir / f"{dev}-{i}.lock", "a+")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                _held_slot = f
                if dev != "cpu":
                    os.environ["CUDA_VISIBLE_DEVICES"] = dev
                return dev
        if on_wait and not told:
            on_wait(len(ahead))
            told = True
        time.sleep(0.5)


def release_slot() -> None:
    global _held_slot
    if _held_slot is not None:
        _held_slot.close()
        _held_slot = None


class _Cancelled(Exception):
    pass


def _raise_cancel(signum, frame):
    raise _Cancelled()


def _wait_for_dependency(config: Config, s: Settings, runs_dir: Path, run_dir: Path) -> None:
    """A run launched while its dependency is still queued or running waits for it (before
    taking a slot, which the dependency may need)."""
    dep = s.init if s.init and not is_path(s.init) else None
    while dep and rd.latest_done(runs_dir, dep) is None and any(
            r.state in rd.LIVE_STATES for r in rd.list_runs(runs_dir, dep)):
        set_state(run_dir, waiting_for=f"experiment {dep}")
        time.sleep(0.5)


def run_queued(config: Config, run_dir: Path, name: str, s: Settings, overrides: list[str],
               runs_dir: Path, queue: bool = True, echo: bool = True) -> str:
    """Wait for a slot, resolve the init checkpoint, train. Returns the final state."""
    old = signal.signal(signal.SIGTERM, _raise_cancel)
    old_int = signal.signal(signal.SIGINT, _raise_cancel)
    try:
        _wait_for_dependency(config, s, runs_dir, run_dir)
        if queue:
            acquire_slot(config, runs_dir, run_dir, s, on_wait=(lambda n: print(
                f"queued: waiting for a free slot ({n} run(s) ahead)", flush=True))
                if echo else None)
        init_from = resolve_init(config, name, s, runs_dir)
    except _Cancelled:
        set_state(run_dir, state="cancelled", ended=rd.now_iso(), error="cancelled while queued")
        return "cancelled"
    except RunError as exc:
        set_state(run_dir, state="failed", ended=rd.now_iso(), error=str(exc))
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
        release_slot()


def run_experiment(config: Config, name: str, overrides: list[str], runs_dir: Path,
                   with_deps: bool = False, run_id: str | None = None, queue: bool = True,
                   echo: bool = True) -> list[tuple[Path, str]]:
    """Run `name` (and, with with_deps, each dependency lacking a successful run, first).
    The same overrides apply to every run in the chain."""
    chain = dependency_chain(config, name) if with_deps else [name]
    todo = [n for n in chain[:-1] if rd.latest_done(runs_dir, n) is None] + [name]
    first = resolve_settings(config, todo[0], overrides)  # validates the overrides too
    dep = first.init if first.init and not is_path(first.init) else None
    if not (dep and any(r.state in rd.LIVE_STATES for r in rd.list_runs(runs_dir, dep))):
        resolve_init(config, todo[0], first, runs_dir)  # fail now, before creating anything
    created = [(n, *create_run(config, n, overrides, runs_dir, run_id if n == name else None))
               for n in todo]  # all queued at once, so a viewer sees the whole chain
    results = []
    for i, (n, run_dir, s) in enumerate(created):
        if echo:
            print(f"run {n}: {run_dir}", flush=True)
        try:
            state = run_queued(config, run_dir, n, s, overrides, runs_dir, queue=queue,
                               echo=echo)
        except RunError:
            state = "failed"
        results.append((run_dir, state))
        if state != "done":
            for _, later, _ in created[i + 1:]:
                set_state(later, state="cancelled", ended=rd.now_iso(),
                          error=f"{n} ended {state}; not started")
            break
    return results


def sweep_point_runs(runs_dir: Path, sweep: str) -> dict[str, list[rd.Run]]:
    """A sweep's runs by point label, newest first."""
    out: dict[str, list[rd.Run]] = {}
    for run in rd.list_runs(runs_dir, sweep):
        out.setdefault(read_run_meta(run.path).get("point"), []).append(run)
    return out


def run_sweep(config: Config, name: str, overrides: list[str], runs_dir: Path,
              queue: bool = True, echo: bool = True) -> list[tuple[str, Path | None, str]]:
    """Every point of a sweep or an ablation, one after another; a point already done
    with the same resolved settings is skipped. `overrides` apply on top of every point."""
    plan = config.plan(name)
    points = []
    for label, base, point_overrides in plan.points():
        all_overrides = point_overrides + list(overrides)
        points.append((label, base, all_overrides,
                       resolve_settings(config, base, all_overrides)))
    # Points that start from an experiment's checkpoint (a rotation-pretrained base, an
    # ablation's "rotation" component) get that experiment run first when it has no
    # successful run, with the same command-line overrides, as `run --with-deps` does.
    deps = dict.fromkeys(s.init for *_, s in points if s.init and not is_path(s.init))
    for dep in deps:
        if rd.latest_done(runs_dir, dep) is None:
            if echo:
                print(f"{name}: running dependency {dep} first", flush=True)
            if run_experiment(config, dep, list(overrides), runs_dir, with_deps=True,
                              queue=queue, echo=echo)[-1][1] != "done":
                raise RunError(f"dependency {dep} did not finish; the sweep needs its checkpoint")
    by_point = sweep_point_runs(runs_dir, name)
    todo, results = [], []
    for label, base, all_overrides, s in points:
        want = {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(s).items()}
        done = next((r for r in by_point.get(label, []) if r.raw_state == "done"
                     and read_run_meta(r.path).get("settings") == want), None)
        if done:
            results.append((label, done.path, "done"))
            if echo:
                print(f"{name} [{label}]: already done in {done.path}", flush=True)
            continue
        run_dir, s = create_run(config, base, all_overrides, runs_dir, sweep=name, point=label)
        todo.append((label, base, run_dir, s, all_overrides))
    for label, base, run_dir, s, all_overrides in todo:
        if echo:
            print(f"{name} [{label}]: {run_dir}", flush=True)
        try:
            state = run_queued(config, run_dir, base, s, all_overrides, runs_dir,
                               queue=queue, echo=echo)
        except RunError:
            state = "failed"
        results.append((label, run_dir, state))
    return results


def resume_run(run_dir: Path, queue: bool = True, echo: bool = True) -> str:
    from .config import load, settings_from_dict, tomllib

    run = rd.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory (no {rd.STATUS})")
    if run.state in ("running", "queued"):
        raise RunError(f"{run_dir} is still {run.state} (pid {run.status.get('pid')})")
    if run.state == "done":
        raise RunError(f"{run_dir} is already done")
    try:
        resolved = tomllib.loads((run_dir / rd.CONFIG).read_text(encoding="utf-8"))
        s = settings_from_dict(resolved["settings"], str(run_dir / rd.CONFIG))
        meta = resolved["run"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise RunError(f"{run_dir / rd.CONFIG} is unreadable: {exc}") from None
    config_path = Path(meta.get("config_file", ""))
    config = load(config_path) if config_path.exists() else None
    set_state(run_dir, state="queued", pid=os.getpid(),
              pid_start=rd.process_start_time(os.getpid()), host=rd.hostname(), error=None)
    if queue and config is not None:
        acquire_slot(config, run_dir.parent.parent, run_dir, s)
    from .train import execute
    try:
        return execute(run_dir, s, init_from=meta.get("init_from", ""), resume=True, echo=echo)
    finally:
        release_slot()


def spawn_engine(argv: list[str], runs_dir: Path, cwd: Path, tag: str) -> Path:
    """`python -m engine ARGV` in its own process session, so that it outlives the caller
    and an SSH hang-up; its output goes to runs/.launch/TAG.txt, never to our pipes."""
    launch_dir = Path(runs_dir) / ".launch"
    launch_dir.mkdir(parents=True, exist_ok=True)
    out = launch_dir / f"{tag}.txt"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    project_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = project_root + os.pathsep + env.get("PYTHONPATH", "")
    with open(out, "wb") as f:
        subprocess.Popen([sys.executable, "-m", "engine", *argv], stdin=subprocess.DEVNULL,
                         stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                         cwd=str(cwd), env=env)
    return out


def launch_detached(config: Config, name: str, overrides: list[str], runs_dir: Path,
                    with_deps: bool = False) -> tuple[str, Path]:
    """Queue `name` (with its missing dependencies first, if asked) in the background.
    Returns the run id it will have and the file that holds its early output."""
    run_id = rd.new_run_id()
    argv = ["run", name, "--config", str(config.path), "--runs-dir", str(runs_dir),
            "--run-id", run_id, "--quiet"]
    for o in overrides:
        argv += ["--set", o]
    if with_deps:
        argv.append("--with-deps")
    return run_id, spawn_engine(argv, runs_dir, config.root, run_id)


def launch_sweep_detached(config: Config, name: str, overrides: list[str],
                          runs_dir: Path) -> Path:
    argv = ["sweep", name, "--config", str(config.path), "--runs-dir", str(runs_dir), "--quiet"]
    for o in overrides:
        argv += ["--set", o]
    return spawn_engine(argv, runs_dir, config.root, f"sweep-{name}-{rd.new_run_id()}")


def resume_detached(run_dir: Path, runs_dir: Path) -> Path:
    return spawn_engine(["resume", str(run_dir), "--runs-dir", str(runs_dir), "--quiet"],
                        runs_dir, Path(run_dir), f"resume-{Path(run_dir).name}")


def cancel(run_dir: Path) -> str:
    run = rd.load_run(run_dir)
    if run is None:
        raise RunError(f"{run_dir} is not a run directory")
    if run.state not in rd.LIVE_STATES:
        raise RunError(f"{run.experiment}/{run.run_id} is {run.state}, not running")
    if run.status.get("host") != rd.hostname():
        raise RunError(f"{run.run_id} runs on {run.status.get('host')}, not on this host")
    os.kill(int(run.status["pid"]), signal.SIGTERM)
    return f"sent SIGTERM to {run.experiment}/{run.run_id} (pid {run.status['pid']})"


__all__ = ["RunError", "ConfigError", "create_run", "run_experiment", "resume_run",
           "launch_detached", "cancel"]
