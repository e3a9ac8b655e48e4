"""The run directory: the one contract between the engine and everything that reads runs.

Documented in docs/run-format.md; change both together. No torch, no textual here.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from engine.core.files import (  # noqa: F401  the run directory's file API, as rd.*
    FileTail,
    MetricsTail,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    clean,
    json_text,
    overwrite_text,
    read_json,
    read_jsonl,
    remove_temporaries,
    written_by,
)
from engine.core.index import RunIndex, signature
from engine.core.tomlfile import dump_toml, toml_value  # noqa: F401  (rd.dump_toml)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG = "config.toml"
STATUS = "status.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
LOG = "log.txt"
PREDICTIONS = "predictions.csv"
SUBMISSION = "submission.csv"
NOTES = "notes.json"  # the user's tags and note; written only by `engine tag`/`note` and the app
CHECKPOINTS = "checkpoints"
STDOUT = "stdout.txt"

STATES = ("queued", "running", "done", "failed", "cancelled", "diverged")
DAMAGED = "damaged"  # a reader's state: status.json or config.toml torn or empty
FINAL_STATES = ("done", "failed", "cancelled", "diverged")
LIVE_STATES = ("queued", "running")


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def update_status(run_dir: Path, **fields) -> dict:
    """Merge `fields` into status.json (atomically) and return the new status."""
    status = read_json(Path(run_dir) / STATUS) or {}
    status.update(fields)
    atomic_write_json(Path(run_dir) / STATUS, status)
    return status


@dataclass
class Run:
    """What a reader knows of one run directory."""

    path: Path
    experiment: str
    run_id: str
    status: dict
    summary: dict | None
    notes: dict = field(default_factory=dict)  # notes.json: {"tags": [...], "note": "..."}
    # asked whether a live run's job still exists (launch.is_alive); None: not asked
    alive: Callable[[dict], bool | None] | None = field(default=None, repr=False,
                                                        compare=False)

    @property
    def raw_state(self) -> str:
        return self.status.get("state", "queued")

    @property
    def state(self) -> str:
        """The recorded state, or "lost" when the run was read with a liveness check
        (`alive`, handed in by the reader) that says a live run's job is gone."""
        state = self.raw_state
        if state in LIVE_STATES and self.alive and self.alive(self.status) is False:
            return "lost"
        return state

    @property
    def epoch(self) -> int:
        return int(self.status.get("epoch") or 0)

    @property
    def tags(self) -> tuple[str, ...]:
        tags = self.notes.get("tags")
        return tuple(str(t) for t in tags) if isinstance(tags, list) else ()

    @property
    def note(self) -> str:
        note = self.notes.get("note")
        return note if isinstance(note, str) else ""

    @property
    def epochs(self) -> int:
        return int(self.status.get("epochs") or 0)

    @property
    def started(self) -> float | None:
        return parse_iso(self.status.get("started"))

    @property
    def ended(self) -> float | None:
        return parse_iso(self.status.get("ended"))


def damage(path: Path) -> str | None:
    """Why a run directory cannot be trusted (status.json or config.toml torn, empty or
    not what it should be), or None."""
    try:
        text = (path / STATUS).read_text(encoding="utf-8")
        status = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"{STATUS} is unreadable (truncated or not JSON)"
    if not isinstance(status, dict):
        return f"{STATUS} holds no JSON object"
    # a run being created writes config.toml just after its directory: missing is fine
    return f"{CONFIG} is empty" if _empty(path / CONFIG) else None


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return False


def load_run(path: Path, alive: Callable | None = None) -> Run | None:
    """The run in `path`; None when there is no status.json. A torn status.json or an
    empty config.toml gives a run in state "damaged", with the reason as its error, so
    that every reader keeps working and shows it. The summary is read only for a done
    run (no other has one). `alive` (launch.is_alive) lets `state` say "lost"."""
    path = Path(path)
    if not (path / STATUS).exists():
        return None
    status = read_json(path / STATUS)
    problem = damage(path) if not isinstance(status, dict) or _empty(path / CONFIG) else None
    if problem:
        return Run(path=path, experiment=path.parent.name, run_id=path.name,
                   status={"state": DAMAGED, "error": problem}, summary=None, alive=alive)
    summary = read_json(path / SUMMARY) if status.get("state") == "done" else None
    return Run(path=path, experiment=path.parent.name, run_id=path.name, status=status,
               summary=summary, notes=read_notes(path), alive=alive)


def read_notes(run_dir: Path) -> dict:
    """notes.json, or {} when there is none (most runs) or it is unreadable."""
    data = read_json(Path(run_dir) / NOTES)
    return data if isinstance(data, dict) else {}


TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.:+")


def tag_error(tag: str) -> str | None:
    """Why `tag` cannot be a tag (tags are one word of letters, digits and _-.:+), or None."""
    if not tag or len(tag) > 40 or not set(tag.lower()) <= TAG_CHARS:
        return (f"{tag!r} is not a tag: a tag is one word of up to 40 letters, digits "
                "and _ - . : +")
    return None


def write_notes(run_dir: Path, add: tuple = (), remove: tuple = (),
                note: str | None = None) -> dict:
    """Add and remove tags and (when `note` is not None) replace the note; written whole
    (temporary file, rename). Returns what notes.json now holds."""
    notes = read_notes(run_dir)
    tags = [t for t in notes.get("tags", []) if isinstance(t, str) and t not in remove]
    tags += [t for t in dict.fromkeys(add) if t not in tags]
    out = {"tags": tags, "note": notes.get("note", "") if note is None else note.strip()}
    atomic_write_json(Path(run_dir) / NOTES, out)
    return out


def run_folders(runs_dir: Path) -> list[str]:
    """The names of the runs folder's experiment, sweep and ablation folders."""
    if not Path(runs_dir).is_dir():
        return []
    return [e.name for e in os.scandir(runs_dir) if not e.name.startswith(".") and e.is_dir()]


def _run_dirs(runs_dir: Path, experiment: str | None = None):
    for name in run_folders(runs_dir):
        if experiment and name != experiment:
            continue
        for run_dir in os.scandir(Path(runs_dir) / name):
            if not run_dir.name.startswith(".") and run_dir.is_dir():
                yield Path(run_dir.path)


def list_runs(runs_dir: Path, experiment: str | None = None,
              alive: Callable | None = None) -> list[Run]:
    """All runs (of one experiment, sweep or ablation if named), newest first."""
    index = RunIndex.open(runs_dir)
    dirs = [str(d) for d in _run_dirs(Path(runs_dir), experiment)]
    out = [run for d in dirs if (run := load_indexed(d, index, alive))]
    if experiment is None:
        index.keep_only(index.key(d) for d in dirs)
    index.save()
    out.sort(key=newest_first_key, reverse=True)
    return out


def load_indexed(d: str, index: RunIndex, alive: Callable | None = None,
                 sig: tuple | None = None) -> Run | None:
    """load_run, from the index while the run's files are as it saw them (`sig`, their
    signature, when the caller has it); a finished run read from its files is added."""
    sig = sig or signature(d, STATUS, NOTES)
    if sig is None:
        return None
    path = Path(d)
    got = index.get(index.key(d), sig)
    if got is not None:
        return Run(path=path, experiment=path.parent.name, run_id=path.name, status=got[0],
                   summary=got[1], notes=got[2], alive=alive)
    run = load_run(path, alive)  # the signature was taken first: a rewrite since is seen
    if run is not None and run.raw_state in FINAL_STATES \
            and (run.raw_state != "done" or run.summary is not None):
        index.put(index.key(d), sig, run.status, run.summary, run.notes)
    return run


def newest_first_key(run: "Run") -> tuple:
    """Run ids order by their second; two made in the same second, by when they were
    queued (the id's random suffix says nothing of order)."""
    at = run.status.get("queued_at")
    return run.run_id[:15], at if isinstance(at, (int, float)) else 0.0, run.run_id


class RunScanner:
    """list_runs for a poller, at a cost that follows what changed, not how many runs
    there are: an experiment folder is listed again only when its modification time
    moved (a run was added); a live run's status.json is read again only when its size or
    modification time (or notes.json's) moved; a finished run's is checked only every
    RECHECK_FINAL_S, or longer where that would take more than RECHECK_SHARE of a core
    (it changes only when someone resumes or tags it), or on scan(full=True)."""

    RECHECK_FINAL_S = 5.0
    RECHECK_SHARE = 0.005  # of one core, at most, that rechecking finished runs may take

    def __init__(self, runs_dir: Path, alive: Callable | None = None):
        self.runs_dir = Path(runs_dir)
        self.alive = alive
        self._top: int | None = None
        self._exps: list[str] = []
        self._listed: dict[str, tuple[int, list[str]]] = {}  # exp dir -> (mtime, run dirs)
        self._cache: dict[str, tuple[tuple, Run]] = {}  # run dir -> (stat signature, Run)
        self._checked = -math.inf
        self._dirs: list[str] | None = None  # every run dir, as last listed
        self._order: list[str] | None = None  # the run dirs newest first, as last sorted
        self._last: list[Run] | None = None  # the last scan's answer
        self._live = False  # whether it held a run not finished
        self._unready: list[str] = []  # run dirs listed without a status.json yet
        self._index = RunIndex.open(self.runs_dir)
        self._recheck_s = self.RECHECK_FINAL_S  # longer where a recheck costs more

    def scan(self, full: bool = False) -> list[Run]:
        """Every run, newest first. With no run live, no folder listed anew and no
        recheck due, the previous list itself: an idle lab costs a few stats a poll."""
        now = time.monotonic()
        full = full or now - self._checked >= self._recheck_s
        if full:
            self._checked = now
        dirs, moved = self._run_dirs()
        # a dir listed before its status.json was written (a launch under way) is in no
        # order: the listing is walked again once it has one (a stray one costs a stat)
        ready = any(os.path.exists(os.path.join(d, STATUS)) for d in self._unready)
        if not (full or moved or self._live or ready) and self._last is not None:
            return self._last
        relist = moved or ready or self._order is None
        pairs, cache, fresh, unready = [], {}, moved, []
        for d in dirs if relist else self._order:
            cached = self._cache.get(d)
            if cached and not full and cached[1].raw_state in FINAL_STATES:
                cache[d] = cached
                pairs.append((d, cached[1]))
                continue
            sig = signature(d, STATUS, NOTES)
            if sig is None:
                fresh = fresh or cached is not None  # its status.json went
                if cached is None:
                    unready.append(d)
                continue
            run = cached[1] if cached and cached[0] == sig else \
                load_indexed(d, self._index, self.alive, sig)
            fresh = fresh or cached is None or run is not cached[1]
            if run is not None:
                cache[d] = (sig, run)
                pairs.append((d, run))
        self._cache = cache
        if relist:  # (a walk of the order alone does not visit them)
            self._unready = unready
        if full and self._last is not None:  # a recheck (not the first reading): 10,000
            # runs about every 10 s instead of 5
            self._recheck_s = max(self.RECHECK_FINAL_S,
                                  (time.monotonic() - now) / self.RECHECK_SHARE)
        if moved:
            self._index.keep_only(self._index.key(d) for d in dirs)
        self._index.save()
        if not (fresh or self._live) and self._last is not None:
            return self._last  # a recheck that found every finished run as it was
        if relist:  # a run's place never changes once it is listed
            pairs.sort(key=lambda p: newest_first_key(p[1]), reverse=True)
            self._order = [d for d, _ in pairs]
        self._last = [run for _, run in pairs]
        self._live = any(run.raw_state not in FINAL_STATES for run in self._last)
        return self._last

    def _run_dirs(self) -> tuple[list[str], bool]:
        """The run directories, and whether any folder was listed anew since last time."""
        try:
            top = os.stat(self.runs_dir).st_mtime_ns
        except OSError:
            self._dirs = []
            return [], True
        moved = top != self._top
        if moved:
            self._top = top
            self._exps = [e.path for e in os.scandir(self.runs_dir)
                          if not e.name.startswith(".") and e.is_dir()]
        for exp in self._exps:
            try:
                mtime = os.stat(exp).st_mtime_ns
            except OSError:
                moved = True
                continue
            listed = self._listed.get(exp)
            if listed is None or listed[0] != mtime:
                self._listed[exp] = (mtime, [e.path for e in os.scandir(exp)
                                             if not e.name.startswith(".") and e.is_dir()])
                moved = True
        if moved or self._dirs is None:
            self._dirs = [d for exp in self._exps if exp in self._listed
                          for d in self._listed[exp][1]]
        return self._dirs, moved


def read_config(run_dir: Path) -> dict:
    """config.toml's [run] table with its [settings] table under "settings"; {} if
    absent or unreadable."""
    try:
        data = tomllib.loads((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return {**data.get("run", {}), "settings": data.get("settings", {})}


def runs_by_point(runs_dir: Path, plan: str,
                  alive: Callable | None = None) -> dict[str, list[Run]]:
    """A sweep's or ablation's runs by point label, newest first."""
    out: dict[str, list[Run]] = {}
    for run in list_runs(runs_dir, plan, alive):
        out.setdefault(read_config(run.path).get("point"), []).append(run)
    return out


def latest_done(runs_dir: Path, experiment: str) -> Run | None:
    for run in list_runs(runs_dir, experiment):
        if run.raw_state == "done":
            return run
    return None


def find_run(runs_dir: Path, ref: str, anywhere: bool = False) -> Path | None:
    """A run given as a path, as EXPERIMENT/RUN_ID, or as a unique RUN_ID (prefix).
    Confined to the runs folder: `../`, absolute paths elsewhere and symlinks that lead
    out of it are refused (None), so that a reference read from a file or passed by the
    app reads and writes nothing outside it. `anywhere`: the reference was typed by the
    user, and a path to a directory holding a run is that run wherever it lives (runs
    kept in /scratch, a colleague's run, another lab's)."""
    if anywhere and ref:
        try:
            path = Path(ref).expanduser().resolve()
            if path.is_dir() and (path / STATUS).is_file():
                return path
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            pass
    root = Path(runs_dir).resolve()
    for cand in (Path(ref), root / ref):
        try:
            path = cand.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            continue
        if path.is_relative_to(root) and path != root and (path / STATUS).is_file():
            return path
    matches = [r.path for r in list_runs(runs_dir) if r.run_id.startswith(ref)]
    return matches[0] if len(matches) == 1 and ref else None
