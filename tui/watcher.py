"""What the app shows, as plain Python: testable without Textual, and free of torch.

The app's worker thread calls `Watcher.poll()` a few times a second; the screens only
render what it returns.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import rundir as rd
from engine.analysis import run_progress
from engine.config import Config, ConfigError, load


class Lab:
    """The experiments file (or the one-line reason it cannot be used) and the runs folder."""

    def __init__(self, config_path: str | Path, runs_dir: str | Path | None = None):
        self.config_path = Path(config_path)
        self._runs_override = Path(runs_dir).resolve() if runs_dir else None
        self.config: Config | None = None
        self.error: str | None = None
        self.mtime: float | None = None
        self.reload()

    def reload(self) -> None:
        try:
            self.mtime = self.config_path.stat().st_mtime
        except OSError:
            self.mtime = None
        try:
            self.config, self.error = load(self.config_path), None
        except ConfigError as exc:
            self.config, self.error = None, str(exc)

    def changed_on_disk(self) -> bool:
        try:
            return self.config_path.stat().st_mtime != self.mtime
        except OSError:
            return self.mtime is not None

    @property
    def runs_dir(self) -> Path:
        if self._runs_override:
            return self._runs_override
        if self.config:
            return self.config.runs_dir()
        return (self.config_path.parent / "runs").resolve()

    def dependency_state(self, name: str, runs: list[rd.Run]) -> tuple[str | None, str]:
        """(the experiment `name` starts from, its state: done|running|queued|missing)."""
        exp = self.config.experiments[name]
        dep = exp.needs
        if not dep:
            return None, ""
        mine = [r for r in runs if r.experiment == dep]
        if any(r.raw_state == "done" for r in mine):
            return dep, "done"
        for r in mine:
            if r.state in rd.LIVE_STATES:
                return dep, r.state
        return dep, "missing"


@dataclass
class RunRow:
    key: str
    state: str
    experiment: str
    run_id: str
    epoch: int
    epochs: int
    best_acc: float | None
    images_per_s: float | None
    elapsed: float | None
    eta: float | None
    error: str | None


@dataclass
class Series:
    """One run's metrics, read incrementally from metrics.jsonl."""

    epochs: list = field(default_factory=list)
    step_x: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    step_lr: list = field(default_factory=list)
    version: int = 0

    def add(self, records: list[dict]) -> None:
        for m in records:
            if m.get("kind") == "epoch":
                self.epochs = [e for e in self.epochs if e["epoch"] < m["epoch"]] + [m]
            elif m.get("kind") == "step" and m.get("loss") is not None:
                if self.step_x and m["step"] <= self.step_x[-1]:  # a resume re-ran steps
                    cut = next(i for i, s in enumerate(self.step_x) if s >= m["step"])
                    del self.step_x[cut:], self.step_loss[cut:], self.step_lr[cut:]
                self.step_x.append(m["step"])
                self.step_loss.append(m["loss"])
                self.step_lr.append(m.get("lr"))
        if records:
            self.version += 1


def downsample(xs: list, ys: list, max_points: int = 400) -> tuple[list, list]:
    """Bucket means: 10,000 steps become max_points points that keep the curve's shape."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    out_x, out_y = [], []
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    return out_x, out_y


@dataclass
class Snapshot:
    rows: list
    runs_changed: bool
    series: dict  # key -> Series (only those whose version moved)
    log_lines: list
    log_gen: int  # which select_log() the lines belong to
    gpus: list | None
    gpu_error: str | None


class GpuMonitor:
    """Each NVIDIA GPU's memory and utilisation via NVML; says why when there is none."""

    def __init__(self, enabled: bool = True):
        self.handles, self.error = [], None
        if not enabled:
            self.error = "GPU readings off"
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
            if not self.handles:
                self.error = "no NVIDIA GPU on this machine"
        except Exception as exc:  # no driver or no library: the app works without GPUs
            self.error = f"no NVIDIA GPU ({type(exc).__name__})"

    def read(self) -> list[dict]:
        out = []
        for i, h in enumerate(self.handles):
            try:
                mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
                util = self._nvml.nvmlDeviceGetUtilizationRates(h).gpu
                name = self._nvml.nvmlDeviceGetName(h)
                name = name.decode() if isinstance(name, bytes) else name
                out.append({"index": i, "name": name, "used_mb": mem.used / 2**20,
                            "total_mb": mem.total / 2**20, "util": util})
            except Exception as exc:
                out.append({"index": i, "name": f"error: {exc}", "used_mb": 0, "total_mb": 0,
                            "util": 0})
        return out


class Watcher:
    """Reads the runs folder: states, progress, new metric lines and the selected log."""

    def __init__(self, lab: Lab, gpu: GpuMonitor):
        self.lab, self.gpu = lab, gpu
        self.tails: dict[str, rd.MetricsTail] = {}
        self.series: dict[str, Series] = {}
        self.sent_versions: dict[str, int] = {}
        self.last_rows: list = []
        self.runs: list[rd.Run] = []
        self.log_gen = 0
        self.log_tail: rd.FileTail | None = None
        self.lock = threading.Lock()

    def select_log(self, key: str | None) -> int:
        """Follow another run's log from its start; returns the generation that its lines
        will carry, so that lines read for an earlier selection are never shown."""
        with self.lock:
            self.log_gen += 1
            self.log_tail = rd.FileTail(Path(key) / rd.LOG) if key else None
            return self.log_gen

    def poll(self, now: float | None = None) -> Snapshot:
        now = now or time.time()
        runs = rd.list_runs(self.lab.runs_dir)
        self.runs = runs
        rows, moved = [], {}
        for run in runs:
            key = str(run.path)
            if key not in self.tails:
                self.tails[key] = rd.MetricsTail(run.path / rd.METRICS)
                self.series[key] = Series()
            series = self.series[key]
            series.add(self.tails[key].read_new())
            if self.sent_versions.get(key) != series.version:
                self.sent_versions[key] = series.version
                moved[key] = series
            p = run_progress(run, series.epochs, now)
            rows.append(RunRow(key, run.state, run.experiment, run.run_id, run.epoch, run.epochs,
                               p["best_acc"], p["images_per_s"], p["elapsed"], p["eta"],
                               run.status.get("error")))
        changed = [(r.key, r.state, r.epoch) for r in rows] != \
            [(r.key, r.state, r.epoch) for r in self.last_rows]
        self.last_rows = rows
        with self.lock:
            gen, tail = self.log_gen, self.log_tail
            lines = [b.decode("utf-8", "replace") for b in tail.read_lines()] if tail else []
        gpus = self.gpu.read() if self.gpu.handles else None
        return Snapshot(rows, changed, moved, lines, gen, gpus, self.gpu.error)
