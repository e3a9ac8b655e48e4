"""runs/.index.json: what a reader learnt of the finished runs, so that the next reader
opens one file instead of three per run. Only a cache, never trusted over the runs:
an entry is used only while its run's status.json and notes.json have the signature
(inode, modification time, size) they had when it was read, a live run is never in it,
and an index that is unreadable, of another version or of another folder is ignored and
written again. Any reader may write it (temporary file and rename); one that cannot
(a read-only lab) simply reads the runs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine.core.files import atomic_write_bytes

FILE = ".index.json"
VERSION = 1


def signature(run_dir: str, status: str, notes: str) -> tuple | None:
    """status.json's and notes.json's (inode, mtime, size); None without a status.json.
    An atomic rewrite gives a new inode, so even a same-size rewrite in the same clock
    tick changes it."""
    try:
        st = os.stat(f"{run_dir}/{status}")  # not os.path.join: 10,000 runs a recheck
    except OSError:
        return None
    try:
        nt = os.stat(f"{run_dir}/{notes}")
        n = (nt.st_ino, nt.st_mtime_ns, nt.st_size)
    except OSError:
        n = (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size, *n)


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class RunIndex:
    """The finished runs' (status, summary, notes) by run directory ("experiment/run-id"),
    each with the signature it was read at."""

    _open: dict[str, "RunIndex"] = {}  # runs folder -> the index this process holds

    @classmethod
    def open(cls, runs_dir: Path) -> "RunIndex":
        """This process's index of `runs_dir`, read again only when another process
        replaced the file (a report lists runs once per comparison)."""
        key = os.path.abspath(runs_dir)
        held = cls._open.get(key)
        if held is None or held._stamp != _stamp(held.path):
            held = cls._open[key] = cls(runs_dir)
        return held

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / FILE
        self._root = os.path.abspath(runs_dir) + os.sep
        self._entries: dict[str, list] = {}
        self._dirty = False
        self._stamp = _stamp(self.path)
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict) and data.get("version") == VERSION \
                    and isinstance(data.get("runs"), dict):
                self._entries = data["runs"]
        except (OSError, ValueError):
            pass  # none yet, or damaged: rebuilt from the runs

    def key(self, run_dir: str) -> str:
        """A run directory inside the runs folder as "experiment/run-id"."""
        d = str(run_dir)
        return d[len(self._root):] if d.startswith(self._root) and ".." not in d \
            else os.path.abspath(d)[len(self._root):]

    def get(self, rel: str, sig: tuple) -> tuple[dict, dict | None, dict] | None:
        entry = self._entries.get(rel)
        try:
            if entry is not None and tuple(entry[0]) == sig \
                    and isinstance(entry[1], dict) and isinstance(entry[3], dict):
                return entry[1], entry[2], entry[3]
        except (TypeError, IndexError):
            pass
        return None

    def put(self, rel: str, sig: tuple, status: dict, summary: dict | None,
            notes: dict) -> None:
        self._entries[rel] = [list(sig), status, summary, notes]
        self._dirty = True

    def keep_only(self, rels) -> None:
        """Forget runs no longer there (deleted or moved)."""
        gone = self._entries.keys() - set(rels)
        for rel in gone:
            del self._entries[rel]
        self._dirty = self._dirty or bool(gone)

    def save(self) -> None:
        """Write the index if it learnt anything; a lab that cannot be written is read
        the slow way, with nothing said."""
        if not self._dirty:
            return
        self._dirty = False
        try:
            atomic_write_bytes(self.path, json.dumps(
                {"version": VERSION, "runs": self._entries},
                separators=(",", ":")).encode())
            self._stamp = _stamp(self.path)
        except OSError:
            pass
