"""What one poll of the lab found, frozen: the UI thread keeps and renders a snapshot while
the watcher's thread goes on reading into its own buffers, so they never share a list."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

from engine.core.config import Config
from engine.live.gpu import Gpu


@dataclass(frozen=True)
class RunRow:
    key: str  # the run directory
    state: str  # as shown: "lost" when a live run's process is gone
    raw_state: str  # as recorded in status.json
    experiment: str
    run_id: str
    epoch: int
    epochs: int
    step: int | None  # within the epoch under way, while running
    steps: int | None
    best_acc: float | None
    images_per_s: float | None
    elapsed: float | None
    eta: float | None
    error: str | None
    summary: Mapping | None  # summary.json, read-only; None until the run is done
    waiting_for: str | None = None  # while queued: "gpu", "cpu" or "experiment NAME"
    collapsed: bool = False  # its embeddings collapsed (the k-NN monitor's spread)
    forecast: Mapping | None = None  # status.json's loss-model forecast (engine/forecast.py)
    job: str | None = None  # a live run's job as its executor says: "PENDING (Resources)"
    effective: str | None = None  # what it trains with, fallbacks included (overview)
    phase: str | None = None  # a phase after the epochs while it runs: "probe 3/100"
    tags: tuple[str, ...] = ()  # notes.json's
    note: str = ""
    settings: Mapping | None = None  # config.toml's settings, read only once a filter asks

    @property
    def acc(self) -> float | None:
        """The run's headline figure: once done, its summary's at the best epoch (test
        accuracy, or k-NN accuracy for a self-supervised task); before, the best so far."""
        if not self.summary:
            return self.best_acc
        return self.summary.get(f"{self.summary.get('headline', 'test_acc')}_at_best",
                                self.best_acc)


@dataclass(frozen=True)
class Series:
    """One run's curves: epoch records (read-only) and step series (bucket means past
    MAX_POINTS steps, lr None read as 0)."""

    key: str
    version: int
    epochs: tuple = ()
    step_x: tuple = ()
    step_loss: tuple = ()
    step_lr: tuple = ()

    def column(self, name: str) -> tuple[tuple, tuple]:
        """(epochs, values) of one epoch metric, skipping epochs without it."""
        pts = [(m["epoch"], m[name]) for m in self.epochs if m.get(name) is not None]
        return tuple(p[0] for p in pts), tuple(p[1] for p in pts)


@dataclass(frozen=True)
class Curve:
    """A sweep's accuracy against its `plot` axis: ((base, ((x, acc), ...)), ...)."""

    axis: str
    lines: tuple
    ylabel: str = ""  # a curve that is not accuracy (the Optimus study's time to target)


@dataclass(frozen=True)
class CompareData:
    """One comparison, formatted: what the Compare view shows."""

    name: str
    title: str
    columns: tuple
    rows: tuple  # tuples of formatted cells
    notes: tuple
    bars: tuple = ()  # an ablation's (configuration, mean accuracy), baseline first
    curve: Curve | None = None
    # the runs behind the table, overlaid: (label, run dir, epochs, headline accuracy)
    runs: tuple = ()


@dataclass(frozen=True)
class Snapshot:
    config: Config | None = None
    config_error: str | None = None
    config_version: int = 0  # moves on every (re)load of the experiments file
    runs_dir: Path | None = None  # None until the first poll
    rows: tuple = ()  # RunRow, newest first
    runs_changed: bool = False  # a run appeared, changed state, epoch, tags or note
    series: Series | None = None  # the selected run's
    log_lines: tuple = ()  # the selected run's new log lines...
    log_gen: int = 0  # ... read for this selection (Watcher.select_run's return)
    compare: CompareData | None = None  # the selected comparison's
    # the workspace's runs (marked in Runs, or a comparison's), in order: their Series,
    # and each one's settings (config.toml's) and provenance (provenance.brief) for the
    # side panel
    workspace: tuple = ()
    workspace_settings: Mapping = field(default_factory=lambda: MappingProxyType({}))
    workspace_provenance: Mapping = field(default_factory=lambda: MappingProxyType({}))
    gpus: tuple[Gpu, ...] | None = None
    gpu_error: str | None = None
    # experiment -> (there, cell, where they are or what to do): published weights' files
    weights: Mapping = field(default_factory=lambda: MappingProxyType({}))

    def row(self, key: str | None) -> RunRow | None:
        return self._by_key.get(key)

    @cached_property
    def _by_key(self) -> dict:  # made once per snapshot: 10,000 rows are not searched
        return {r.key: r for r in self.rows}

    def news_since(self, other: "Snapshot") -> bool:
        """Whether this shows anything `other` did not: with no run live and nothing
        selected changing, a poll finds nothing new and the UI need not hear of it."""
        return not (
            not self.log_lines and not self.runs_changed and self.log_gen == other.log_gen
            and self.series is other.series and self.compare is other.compare
            and len(self.workspace) == len(other.workspace)
            and all(a is b for a, b in zip(self.workspace, other.workspace))
            and self.config_version == other.config_version
            and self.config_error == other.config_error and self.runs_dir == other.runs_dir
            and self.gpus == other.gpus and self.gpu_error == other.gpu_error
            and self.weights == other.weights
            and len(self.rows) == len(other.rows)
            and all(a is b for a, b in zip(self.rows, other.rows)))
