"""Files that readers can trust: atomic writes (temporary file, fsync, rename), strict
JSON, and tails of append-only JSON lines that skip a torn last line."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from engine.core import faults


def fsync_dir(folder: Path) -> None:
    """A rename is durable only once its directory is on disk too (a power cut after
    rename may otherwise bring back the old file, or none)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data, where: str = "") -> None:
    """Write to a temporary name beside `path`, fsync it, rename it over `path`, fsync
    the directory: after a kill or a power cut `path` holds the old version or the new
    one, whole. `where` names the write for fault injection (faults.py)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            faults.write(f, data, where)
            f.flush()
            os.fsync(f.fileno())
        faults.before_rename(path.name)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:  # a full disk, a signal: no temporary file left behind
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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


def append_jsonl(path: Path, record: dict, durable: bool = False) -> None:
    """One line, flushed at once, so that a viewer tailing the file sees it. `durable`
    fsyncs the file too (the epoch's record, before the checkpoint that counts it: after
    a power cut no checkpoint is ahead of the metrics a resume keeps)."""
    with open(path, "a", encoding="utf-8") as f:
        faults.write(f, json.dumps(clean(record), separators=(",", ":")) + "\n", "metrics")
        f.flush()
        if durable:
            os.fsync(f.fileno())


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
