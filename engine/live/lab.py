"""The experiments file and the runs folder, as the watcher's thread sees them."""
from __future__ import annotations

from pathlib import Path

from engine.core import hub
from engine.core.config import Config, load
from engine.core.errors import RotundaError
from engine.core.settings import Pretrained, WeightsFile


class Lab:
    """The experiments file (and the one-line reason it cannot be used now, beside the
    last version that loaded, if any) and the runs folder. Only the watcher's thread
    touches it; the app sees its state through snapshots."""

    def __init__(self, config_path: str | Path, runs_dir: str | Path | None = None):
        self.config_path = Path(config_path)
        self._runs_override = Path(runs_dir).resolve() if runs_dir else None
        self.config: Config | None = None
        self.error: str | None = None
        self.version = 0  # one more on every load: how the app tells a reload happened
        self._mtime: float | None = None

    def refresh(self, force: bool = False) -> bool:
        """Load the file when it changed on disk since the last load (or when forced);
        True when it was loaded."""
        mtime = self._stat()
        if self.version and not force and mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            self.config, self.error = load(self.config_path), None
        except RotundaError as exc:  # the CLI's one line, shown above the table; the last
            self.error = str(exc)  # good version stays on screen (self.config kept)
        self.version += 1
        return True

    def _stat(self) -> float | None:
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return None

    @property
    def runs_dir(self) -> Path:
        if self._runs_override:
            return self._runs_override
        if self.config:
            return self.config.runs_dir()
        return (self.config_path.parent / "runs").resolve()


def weights_state(e, root: Path) -> tuple[bool, str, str] | None:
    """For published weights (by name or file): (there, cell, the line that says where
    they are or what to do), before anything is launched; None for other starts."""
    init = e.settings.init
    if isinstance(init, Pretrained):
        pub = hub.published(e.settings.model, init.weights)
        if pub.cached.is_file():
            return True, f"{pub.name} (cached)", f"{pub.file} in {pub.cached.parent}"
        return False, f"{pub.name} (not cached)", pub.missing_line(
            "a run downloads them only where there is network")
    if isinstance(init, WeightsFile):
        path = Path(init.path).expanduser()
        path = path if path.is_absolute() else root / path
        if path.is_file():
            return True, f"{path.name}", str(path)
        return False, f"{path.name} (missing)", f"weights file {path} does not exist"
    return None


def weights_states(config: Config | None) -> dict[str, tuple[bool, str, str]]:
    """weights_state of every experiment that starts from published weights or a file."""
    if config is None:
        return {}
    return {e.name: w for e in config.experiments.values()
            if (w := weights_state(e, config.root)) is not None}
