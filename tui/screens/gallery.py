"""The gallery: the engine scores 20 test images in its own process (the app never
imports torch) and draws them as ANSI text, which a Pager shows."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.text import Text

from engine import rundir as rd
from engine.errors import RunError

ROOT = Path(__file__).resolve().parent.parent.parent  # where `python -m engine` is found
TIMEOUT_S = 300


def has_checkpoint(run_dir: str) -> bool:
    return (Path(run_dir) / rd.CHECKPOINTS / "best.pt").exists()


def gallery_text(run_dir: str, width: int) -> Text:
    """Blocks while the engine scores; raises RunError with the engine's one line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-m", "engine", "gallery", run_dir, "--ansi",
                               "--width", str(width)], capture_output=True, text=True,
                              env=env, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RunError(f"gallery: the engine did not answer in {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RunError(lines[-1].removeprefix("error: ") if lines else "gallery failed")
    return Text.from_ansi(proc.stdout)
