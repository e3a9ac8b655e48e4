"""A box the size of the terminal, less a margin, showing what a `python -m engine`
command prints as ANSI text: the gallery and the dataset card. The engine runs in its own
process (the app never imports torch), from a worker thread, once the box is laid out, so
that it is told exactly the width it has."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.core.errors import RunError
from tui.notices import USER_ERRORS, error_line

ROOT = Path(__file__).resolve().parent.parent.parent  # where `python -m engine` is found
TIMEOUT_S = 300


def engine_ansi(args: list[str], what: str) -> Text:
    """`python -m engine ARGS --ansi`'s output; blocks while the engine works. A failure
    is a RunError with the engine's one line (what it printed after "error: ")."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-m", "engine", *args, "--ansi"],
                              capture_output=True, text=True, env=env, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RunError(f"{what}: the engine did not answer in {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RunError(lines[-1].removeprefix("error: ") if lines else f"{what} failed")
    return Text.from_ansi(proc.stdout)


class EngineBox(ModalScreen[None]):
    """Subclasses say what to show in `fetch(width)`, which runs in a worker thread; its
    user errors close the box and show as one error notification."""

    BINDINGS = [("escape,q", "close", "Close")]
    KIND: ClassVar[str]  # names the box (#KIND-box), its text (#KIND-text) and the worker

    def __init__(self, title: str, waiting: str) -> None:
        super().__init__()
        self.box_title, self.waiting = title, waiting

    def compose(self) -> ComposeResult:
        with VerticalScroll(id=f"{self.KIND}-box", classes="engine-box"):
            yield Static(self.waiting, id=f"{self.KIND}-text")

    def on_mount(self) -> None:
        self.query_one(f"#{self.KIND}-box").border_title = self.box_title
        self.call_after_refresh(self.start)

    def start(self) -> None:
        width = self.query_one(f"#{self.KIND}-box").scrollable_content_region.width
        self.run_worker(lambda: self.show_text(width), thread=True, group=self.KIND)

    def fetch(self, width: int) -> Text:
        raise NotImplementedError

    def show_text(self, width: int) -> None:
        try:
            text = self.fetch(width)
        except USER_ERRORS as exc:
            self.app.call_from_thread(self.failed, error_line(f"{self.KIND} failed", exc))
            return
        self.app.call_from_thread(self.query_one(f"#{self.KIND}-text", Static).update, text)

    def failed(self, line: str) -> None:
        self.dismiss(None)
        self.app.notify(line, severity="error", timeout=8)

    def action_close(self) -> None:
        self.dismiss(None)
