"""One training run, top to bottom, writing everything into its run directory.

execute() owns the run's status; run() loads data and model and loops over epochs;
train_one_epoch() and evaluate() are the two halves of an epoch. What depends on the
training objective is asked of the run's Task (engine/tasks/).
"""
from __future__ import annotations

import errno
import sys
import traceback
from pathlib import Path

import torch

from engine import launch
from engine.core import progress
from engine.core import rundir as rd
from engine.core.errors import RotundaError
from engine.core.settings import Settings
from engine.launch.local import process_alive
from engine.train import distributed
from engine.train.control import QuietLog, RunLog, Stop
from engine.train.loop import Diverged, Run


def execute(run_dir: Path, s: Settings, init_from: str = "", resume: bool = False,
            echo: bool = True) -> str:
    """Train, record, and return the final state. Never raises for a run's own failure:
    the state and the reason land in status.json."""
    run_dir = Path(run_dir)
    ranks = distributed.from_env() or distributed.SINGLE
    if not ranks.main:
        return _follow(run_dir, s, init_from, resume, ranks)
    log = RunLog(run_dir, echo)
    status = rd.read_json(run_dir / rd.STATUS) or {}
    if resume:
        rd.remove_temporaries(run_dir, process_alive)
    status.update(state="running", error=None, epochs=s.epochs, **launch.current().identity())
    if not (resume and status.get("started")):
        status["started"] = rd.now_iso()
    progress.start_segment(status, resume)
    status["ended"] = None
    _write_status(run_dir, status)
    stop = Stop()
    stop.install()
    ok, watching = False, None
    try:
        if s.gpus > 1 and not ranks.distributed:  # rank 0 of a run it starts itself
            ranks = distributed.spawn(s.gpus, _spawned_rank, (run_dir, s, init_from, resume))
            watching = distributed.watch(ranks, lambda line: _failed(run_dir, status, log,
                                                                     line))
        state, error = Run(run_dir, s, log, status, stop, ranks).run(init_from, resume)
        ok = True
    except RotundaError as exc:
        state, error = "failed", str(exc)
        log(f"failed: {error}")
    except Diverged as exc:
        state, error = "diverged", str(exc)
        log(f"diverged: {error}")
    except torch.cuda.OutOfMemoryError:
        state, error = "failed", (
            f"out of memory at batch_size {s.batch_size}: try a smaller batch (python -m "
            f"engine throughput EXPERIMENT finds the largest that fits); checkpoints/last.pt "
            f"keeps the last finished epoch")
        log(f"failed: {error}")
    except Exception as exc:  # the run fails; the traceback goes to its log, not the user
        state, error = "failed", _disk_full(exc, run_dir)
        if error is None:
            error = (distributed.lost(ranks, exc) if ranks.distributed else None) or (
                f"{type(exc).__name__}: {exc}")
            with open(run_dir / rd.LOG, "a", encoding="utf-8") as f:
                f.write(traceback.format_exc())
        log(f"failed: {error}")
    if ranks.distributed:
        distributed.close(ranks, ok)
        if watching is not None:
            watching.set()
    status.update(state=state, error=error,
                  ended=None if state == "queued" else rd.now_iso())  # queued: requeued
    _write_status(run_dir, status)
    return state


def _write_status(run_dir: Path, status: dict) -> None:
    try:
        rd.atomic_write_json(run_dir / rd.STATUS, status)
    except OSError as exc:  # no room for a temporary copy: how the run ends must be told
        if not _disk_full(exc, run_dir):
            raise
        rd.overwrite_text(run_dir / rd.STATUS, rd.json_text(status))


def _disk_full(exc: BaseException, run_dir: Path) -> str | None:
    if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return None
    name = exc.filename and rd.written_by(Path(exc.filename))
    where = "the run directory" if not name else (
        name.relative_to(run_dir) if name.is_relative_to(run_dir) else name)
    return (f"disk full: no space left writing {where}; free some space, then python -m "
            f"engine resume {run_dir} continues from checkpoints/last.pt")


def _failed(run_dir: Path, status: dict, log, line: str) -> None:
    log(f"failed: {line}")
    status.update(state="failed", error=line, ended=rd.now_iso())
    rd.atomic_write_json(run_dir / rd.STATUS, status)


def _spawned_rank(index: int, port: int, world: int, run_dir: Path, s: Settings,
                  init_from: str, resume: bool) -> None:
    """Ranks 1..N-1 of a run whose rank 0 spawned them (distributed.spawn)."""
    distributed.become_rank(index, port, world)
    execute(run_dir, s, init_from, resume, echo=False)


def _follow(run_dir: Path, s: Settings, init_from: str, resume: bool,
            ranks: distributed.Ranks) -> str:
    """A rank other than 0: the same run, writing nothing; its own errors go to stderr
    (a run's failure, which every rank meets alike, is rank 0's to record)."""
    stop = Stop()
    stop.install()
    ok = False
    try:
        state, _ = Run(run_dir, s, QuietLog(), {}, stop, ranks).run(init_from, resume)
        ok = True
    except (RotundaError, Diverged) as exc:
        state = "failed"
        print(f"rank {ranks.rank}: {exc}", file=sys.stderr, flush=True)
    except Exception:
        print(f"rank {ranks.rank}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        distributed.close(ranks, False)
        raise
    distributed.close(ranks, ok)
    return state
