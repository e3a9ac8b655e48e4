"""Fault injection for the reliability tests (tests/e2e/test_kill_anywhere.py,
test_full_disk.py). ROTUNDA_FAULT="kill:checkpoint:3" SIGKILLs this process halfway
through its 3rd checkpoint write; "kill:metrics:N" halfway through its Nth metrics line;
"full:WHERE:N" raises ENOSPC there instead, for a full-disk test where no small
filesystem can be mounted; "kill:rename-NAME:N" SIGKILLs it before the Nth rename over NAME
(status.json, last.pt, ...), its temporary file written and fsynced: a power cut's moment. Unset or malformed: every write is a plain write."""
from __future__ import annotations

import errno
import os
import signal

_counts: dict[str, int] = {}


def _armed(where: str) -> str | None:
    parts = os.environ.get("ROTUNDA_FAULT", "").split(":")
    if len(parts) != 3 or parts[1] != where or parts[0] not in ("kill", "full"):
        return None
    _counts[where] = _counts.get(where, 0) + 1
    return parts[0] if str(_counts[where]) == parts[2] else None


def write(f, data, where: str) -> None:
    """f.write(data), or the armed fault halfway through it."""
    fault = _armed(where)
    if fault is None:
        f.write(data)
        return
    f.write(data[: len(data) // 2])
    f.flush()
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(f, "name", None))


def before_rename(name: str) -> None:
    """The armed kill between a temporary file's fsync and its rename over `name`."""
    if _armed(f"rename-{name}") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
