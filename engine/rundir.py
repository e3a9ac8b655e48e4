"""The run directory: the one contract between the engine and everything that reads runs.

Documented in docs/run-format.md; change both together. No torch, no textual here.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import faults

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


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name beside `path`, fsync, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a signal: no temporary file left behind
        tmp.unlink(missing_ok=True)
        raise


def overwrite_text(path: Path, text: str) -> None:
    """Rewrite `path` in place: the last resort when the disk is too full for a temporary
    copy (a file no longer than before needs no new blocks). Not atomic."""
    with open(path, "r+", encoding="utf-8") as f:
        f.write(text)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


_TEMPORARY = re.compile(r"\.(.+)\.(\d+)\.tmp")


def written_by(path: Path) -> Path:
    """The file a temporary name (`.NAME.PID.tmp`) stands for; other paths as they are."""
    m = _TEMPORARY.fullmatch(path.name)
    return path.with_name(m.group(1)) if m else path


def remove_temporaries(run_dir: Path, writing) -> None:
    """Temporary files a killed writer left (`.NAME.PID.tmp`): never read, only space.
    Those of a process still `writing(pid)` (updating status.json this instant) stay."""
    for tmp in [*Path(run_dir).glob(".*.tmp"), *Path(run_dir).glob("checkpoints/.*.tmp")]:
        m = _TEMPORARY.fullmatch(tmp.name)
        if not (m and int(m.group(2)) != os.getpid() and writing(int(m.group(2)))):
            tmp.unlink(missing_ok=True)
    return True


def _json_default(o):
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def clean(value):
    """NaN and infinities become null so that every reader gets strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def json_text(data: Any) -> str:
    return json.dumps(clean(data), indent=2, default=_json_default) + "\n"


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json_text(data))


def read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def append_jsonl(path: Path, record: dict) -> None:
    """One line, flushed at once, so that a viewer tailing the file sees it."""
    with open(path, "a", encoding="utf-8") as f:
        faults.write(f, json.dumps(clean(record), separators=(",", ":")) + "\n", "metrics")
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    tail = MetricsTail(path)
    return tail.read_new()


class FileTail:
    """Reads only the complete lines appended since the last call; a torn last line is left
    for the next call, when the writer will have finished it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0

    def read_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # rewritten (a resume trims it): start again
                    self.offset = 0
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return chunk[: end + 1].splitlines()


class MetricsTail(FileTail):
    def read_new(self) -> list[dict]:
        out = []
        for line in self.read_lines():
            try:
                out.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        return out


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

    @property
    def raw_state(self) -> str:
        return self.status.get("state", "queued")

    @property
    def state(self) -> str:
        """The recorded state, or "lost" when the executor that ran a live run says its
        job is gone."""
        state = self.raw_state
        if state in LIVE_STATES:
            from .launch import is_alive  # launch reads run directories: import late
            if is_alive(self.status) is False:
                return "lost"
        return state

    @property
    def epoch(self) -> int:
        return int(self.status.get("epoch") or 0)

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


def load_run(path: Path) -> Run | None:
    """The run in `path`; None when there is no status.json. A torn status.json or an
    empty config.toml gives a run in state "damaged", with the reason as its error, so
    that every reader keeps working and shows it. The summary is read only for a done
    run (no other has one)."""
    path = Path(path)
    if not (path / STATUS).exists():
        return None
    status = read_json(path / STATUS)
    problem = damage(path) if not isinstance(status, dict) or _empty(path / CONFIG) else None
    if problem:
        return Run(path=path, experiment=path.parent.name, run_id=path.name,
                   status={"state": DAMAGED, "error": problem}, summary=None)
    summary = read_json(path / SUMMARY) if status.get("state") == "done" else None
    return Run(path=path, experiment=path.parent.name, run_id=path.name, status=status,
               summary=summary)


def _run_dirs(runs_dir: Path, experiment: str | None = None):
    if not runs_dir.is_dir():
        return
    for exp_dir in os.scandir(runs_dir):
        if exp_dir.name.startswith(".") or not exp_dir.is_dir() or \
                (experiment and exp_dir.name != experiment):
            continue
        for run_dir in os.scandir(exp_dir.path):
            if not run_dir.name.startswith(".") and run_dir.is_dir():
                yield Path(run_dir.path)


def list_runs(runs_dir: Path, experiment: str | None = None) -> list[Run]:
    """All runs (of one experiment, sweep or ablation if named), newest first."""
    out = [run for d in _run_dirs(Path(runs_dir), experiment) if (run := load_run(d))]
    out.sort(key=lambda r: r.run_id, reverse=True)
    return out


class RunScanner:
    """list_runs for a poller, at a cost that follows what changed, not how many runs
    there are: an experiment folder is listed again only when its modification time
    moved (a run was added); a live run's status.json is read again only when its size or
    modification time moved; a finished run's is checked only every RECHECK_FINAL_S (it
    changes only when someone resumes it), or on scan(full=True)."""

    RECHECK_FINAL_S = 5.0

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._top: int | None = None
        self._exps: list[str] = []
        self._listed: dict[str, tuple[int, list[str]]] = {}  # exp dir -> (mtime, run dirs)
        self._cache: dict[str, tuple[tuple, Run]] = {}  # run dir -> (stat signature, Run)
        self._checked = -math.inf

    def scan(self, full: bool = False) -> list[Run]:
        now = time.monotonic()
        full = full or now - self._checked >= self.RECHECK_FINAL_S
        if full:
            self._checked = now
        out, cache = [], {}
        for d in self._run_dirs():
            cached = self._cache.get(d)
            if cached and not full and cached[1].raw_state in FINAL_STATES:
                cache[d] = cached
                out.append(cached[1])
                continue
            try:
                st = os.stat(os.path.join(d, STATUS))
            except OSError:
                continue
            sig = (st.st_mtime_ns, st.st_size)
            run = cached[1] if cached and cached[0] == sig else load_run(Path(d))
            if run is not None:
                cache[d] = (sig, run)
                out.append(run)
        self._cache = cache
        out.sort(key=lambda r: r.run_id, reverse=True)
        return out

    def _run_dirs(self) -> list[str]:
        try:
            top = os.stat(self.runs_dir).st_mtime_ns
        except OSError:
            return []
        if top != self._top:
            self._top = top
            self._exps = [e.path for e in os.scandir(self.runs_dir)
                          if not e.name.startswith(".") and e.is_dir()]
        dirs: list[str] = []
        for exp in self._exps:
            try:
                mtime = os.stat(exp).st_mtime_ns
            except OSError:
                continue
            listed = self._listed.get(exp)
            if listed is None or listed[0] != mtime:
                listed = (mtime, [e.path for e in os.scandir(exp)
                                  if not e.name.startswith(".") and e.is_dir()])
                self._listed[exp] = listed
            dirs += listed[1]
        return dirs


def read_config(run_dir: Path) -> dict:
    """config.toml's [run] table with its [settings] table under "settings"; {} if
    absent or unreadable."""
    try:
        data = tomllib.loads((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return {**data.get("run", {}), "settings": data.get("settings", {})}


def runs_by_point(runs_dir: Path, plan: str) -> dict[str, list[Run]]:
    """A sweep's or ablation's runs by point label, newest first."""
    out: dict[str, list[Run]] = {}
    for run in list_runs(runs_dir, plan):
        out.setdefault(read_config(run.path).get("point"), []).append(run)
    return out


def latest_done(runs_dir: Path, experiment: str) -> Run | None:
    for run in list_runs(runs_dir, experiment):
        if run.raw_state == "done":
            return run
    return None


def find_run(runs_dir: Path, ref: str) -> Path | None:
    """A run given as a path, as EXPERIMENT/RUN_ID, or as a unique RUN_ID (prefix), and
    only inside the runs folder: `../`, absolute paths elsewhere and symlinks that lead
    out of it are refused (None), so nothing outside it is read or written."""
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


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if hasattr(v, "to_toml"):  # a starting point (settings.Init)
        return toml_value(v.to_toml())
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(tables: dict[str, dict]) -> str:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None)
        lines.append("")
    return "\n".join(lines)
