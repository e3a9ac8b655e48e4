"""How a run talks and stops: its log (log.txt, echoed or silent on other ranks) and the
signals that end it after the current step (SIGTERM, SIGINT, Slurm's USR1)."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from engine.core import rundir as rd


class RunLog:
    """log.txt for the record; the same lines on stdout when `echo` is set."""

    def __init__(self, run_dir: Path, echo: bool):
        self.path = run_dir / rd.LOG
        self.echo = echo

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:  # a full disk must not hide why the run ended: stderr has it
            print(line, file=sys.stderr, flush=True)
        if self.echo:
            print(line, flush=True)


class QuietLog:
    """The log of a rank other than 0: only rank 0 writes the run directory."""

    echo = False

    def __call__(self, msg: str) -> None:
        pass


class Stop:
    """SIGTERM/SIGINT ask the loop to stop after the current step; so does SIGUSR1, a batch
    system's warning before a time limit or a preemption (the executor then requeues)."""

    def __init__(self):
        self.signal = None

    def __call__(self, signum, frame):
        self.signal = signum

    def install(self):
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGUSR1, self)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
