"""The gallery: the engine scores 20 test images in its own process (the app never
imports torch) and draws them as ANSI text, as many images a row as fit in the box."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text

from engine.core import rundir as rd
from engine.core.errors import RunError
from tui.screens.engine_box import EngineBox, engine_ansi


def has_checkpoint(run_dir: str) -> bool:
    return (Path(run_dir) / rd.CHECKPOINTS / "best.pt").exists()


def gallery_text(run_dir: str, width: int) -> Text:
    """Blocks while the engine scores; raises RunError with the engine's one line. The
    engine lays out (width + 2) // 18 images a row, so none is wider than `width`."""
    # the engine reads runs inside a runs folder only: this run's
    return engine_ansi(["gallery", run_dir, "--runs-dir", str(Path(run_dir).parent.parent),
                        "--width", str(width)], "gallery")


class Gallery(EngineBox):
    KIND = "gallery"

    def __init__(self, run_dir: str, name: str) -> None:
        super().__init__(f"gallery: {name}", f"scoring 20 test images of {name}...")
        self.run_dir, self.run_name = run_dir, name

    def fetch(self, width: int) -> Text:
        if not has_checkpoint(self.run_dir):
            raise RunError(f"{self.run_name} has no checkpoint yet: pick a run that "
                           "finished an epoch")
        return gallery_text(self.run_dir, width)
