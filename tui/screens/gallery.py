"""The gallery: the engine scores 20 test images in its own process (the app never
imports torch) and draws them as ANSI text, as many images a row as fit in the box."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine import rundir as rd
from engine.errors import RunError

from ..notices import USER_ERRORS, error_line

ROOT = Path(__file__).resolve().parent.parent.parent  # where `python -m engine` is found
TIMEOUT_S = 300


def has_checkpoint(run_dir: str) -> bool:
    return (Path(run_dir) / rd.CHECKPOINTS / "best.pt").exists()


def gallery_text(run_dir: str, width: int) -> Text:
    """Blocks while the engine scores; raises RunError with the engine's one line. The
    engine lays out (width + 2) // 18 images a row, so none is wider than `width`."""
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


class Gallery(ModalScreen[None]):
    """A box the size of the terminal, less a margin; once laid out, the engine is asked
    for exactly the images a row that fit in its width."""

    BINDINGS = [("escape,q", "close", "Close")]

    def __init__(self, run_dir: str, name: str) -> None:
        super().__init__()
        self.run_dir, self.run_name = run_dir, name

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="gallery-box"):
            yield Static(f"scoring 20 test images of {self.run_name}...", id="gallery-text")

    def on_mount(self) -> None:
        self.query_one("#gallery-box").border_title = f"gallery: {self.run_name}"
        self.call_after_refresh(self.start)

    def start(self) -> None:
        self.score(self.query_one("#gallery-box").scrollable_content_region.width)

    @work(thread=True, group="gallery")
    def score(self, width: int) -> None:
        try:
            if not has_checkpoint(self.run_dir):
                raise RunError(f"{self.run_name} has no checkpoint yet: pick a run that "
                               "finished an epoch")
            text = gallery_text(self.run_dir, width)
        except USER_ERRORS as exc:
            self.app.call_from_thread(self.failed, error_line("gallery failed", exc))
            return
        self.app.call_from_thread(self.query_one("#gallery-text", Static).update, text)

    def failed(self, line: str) -> None:
        self.dismiss(None)
        self.app.notify(line, severity="error", timeout=8)

    def action_close(self) -> None:
        self.dismiss(None)
