"""The experiments file and the runs folder, as the watcher's thread sees them."""
from __future__ import annotations

from pathlib import Path

from engine.core.config import Config, load
from engine.core.errors import RotundaError


class Lab:
    """The experiments file (or the one-line reason it cannot be used) and the runs folder.
    Only the watcher's thread touches it; the app sees its state through snapshots."""

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
        except RotundaError as exc:  # the CLI's one line, shown above the empty table
            self.config, self.error = None, str(exc)
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
