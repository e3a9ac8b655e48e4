"""The app's eyes, as plain Python: testable without Textual, and free of torch.

The app's worker thread calls `Watcher.poll()` a few times a second and posts the frozen
Snapshot it returns; every file the app shows is read here, never on the event loop:
status files (only those that changed), the selected run's metrics and log, and the
runs behind the selected comparison when something changed. The UI thread only tells
the watcher what is selected (select_run, select_compare, ask_reload), under a lock.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from engine import launch
from engine.core import rundir as rd
from engine.core.provenance import PROVENANCE, brief
from engine.live.gpu import GpuMonitor
from engine.live.lab import Lab, weights_states
from engine.live.snapshot import CompareData, Curve, RunRow, Series, Snapshot
from engine.report.compare import compare_table, curve, table_names, table_runs
from engine.report.overview import effective_text, job_text, run_progress

MAX_POINTS = 400  # step series are averaged down to this many points for the plots


def downsample(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[tuple, tuple]:
    """Bucket means: 10,000 steps become max_points points that keep the curve's shape."""
    n = len(xs)
    if n <= max_points:
        return tuple(xs), tuple(ys)
    out_x, out_y = [], []
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    return tuple(out_x), tuple(out_y)


class SeriesBuffer:
    """One run's metrics, read incrementally from metrics.jsonl. Lives in the watcher's
    thread; `frozen()` hands out an immutable copy, made again only after new lines."""

    def __init__(self, key: str):
        self.key = key
        self.tail = rd.MetricsTail(Path(key) / rd.METRICS)
        self.epochs: list[dict] = []
        self.step_x: list = []
        self.step_loss: list = []
        self.step_lr: list = []
        self.version = 0
        self._frozen: Series | None = None

    def read(self) -> None:
        self.add(self.tail.read_new())

    def add(self, records: list[dict]) -> None:
        for m in records:
            if m.get("kind") == "epoch" and isinstance(m.get("epoch"), int):
                # a resume (or a file read again from its start) replaces later epochs
                self.epochs = [e for e in self.epochs if e["epoch"] < m["epoch"]] + [m]
            elif m.get("kind") == "step" and m.get("loss") is not None \
                    and isinstance(m.get("step"), int):
                if self.step_x and m["step"] <= self.step_x[-1]:  # a resume re-ran steps
                    cut = next(i for i, s in enumerate(self.step_x) if s >= m["step"])
                    del self.step_x[cut:], self.step_loss[cut:], self.step_lr[cut:]
                self.step_x.append(m["step"])
                self.step_loss.append(m["loss"])
                self.step_lr.append(m.get("lr"))
        if records:
            self.version += 1

    def frozen(self) -> Series:
        if self._frozen is None or self._frozen.version != self.version:
            x, loss = downsample(self.step_x, self.step_loss)
            _, lr = downsample(self.step_x, [v or 0.0 for v in self.step_lr])
            self._frozen = Series(self.key, self.version,
                                  tuple(MappingProxyType(dict(m)) for m in self.epochs),
                                  x, loss, lr)
        return self._frozen


def run_row(run: rd.Run, now: float, settings: Mapping | None = None) -> RunRow:
    p = run_progress(run, now)
    summary = MappingProxyType(dict(run.summary)) if run.summary else None
    forecast = run.status.get("forecast")
    return RunRow(str(run.path), run.state, run.raw_state, run.experiment, run.run_id,
                  run.epoch, run.epochs, p["step"], p["steps"], p["best_acc"],
                  p["images_per_s"], p["elapsed"], p["eta"], run.status.get("error"), summary,
                  run.status.get("waiting_for"), bool(run.status.get("collapsed")),
                  MappingProxyType(dict(forecast)) if isinstance(forecast, dict) else None,
                  job_text(run), effective_text(run.status), p["phase"], run.tags, run.note,
                  settings)


def compare_data(config, name: str, runs_dir) -> CompareData:
    """Reads every run behind comparison `name`: the table, and an ablation's bars or a
    plotted sweep's curve."""
    t = compare_table(config, name, runs_dir)
    got = curve(config, name, runs_dir, t)
    bars = ()
    if name in config.ablations:
        bars = tuple((row[0], row[1]) for row in t.rows if row[1] is not None)
    lines = Curve(got[0], tuple((b, tuple(pts)) for b, pts in got[1].items())) if got else None
    if t.plot and any(t.plot[1].values()):  # a comparison that plots something else
        lines = Curve(t.plot[0], tuple((b, tuple(pts)) for b, pts in t.plot[1].items()),
                      t.plot[2])
    return CompareData(name, t.title, tuple(c for c, _ in t.columns),
                       tuple(tuple(r) for r in t.formatted()), tuple(t.notes), bars, lines,
                       tuple(run_curve(label, path)
                             for label, path in table_runs(config, name, runs_dir)))


def run_curve(label: str, run_dir: Path) -> tuple:
    """(label, run dir, epochs, accuracy per epoch): test accuracy, or k-NN accuracy for
    a self-supervised run, from its epoch records."""
    epochs = [m for m in rd.read_jsonl(Path(run_dir) / rd.METRICS) if m.get("kind") == "epoch"]
    key = "test_acc" if any(m.get("test_acc") is not None for m in epochs) else "knn_acc"
    pts = [(m["epoch"], m[key]) for m in epochs if m.get(key) is not None]
    return label, str(run_dir), tuple(p[0] for p in pts), tuple(p[1] for p in pts)


class Watcher:
    """Reads the lab: the experiments file, run states and progress, new metric lines and
    log lines of the selected run, the selected comparison, the GPUs."""

    def __init__(self, lab: Lab, gpu: GpuMonitor):
        self.lab, self.gpu = lab, gpu
        self._scanner: rd.RunScanner | None = None
        self._buffer: SeriesBuffer | None = None  # the selected run's metrics
        self._last_rows: tuple = ()
        self._compare: CompareData | None = None
        self._compare_config = None  # the Config that _compare was computed from
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards what the UI thread sets below
        self._selected: str | None = None
        self._log_gen = 0
        self._log_tail: rd.FileTail | None = None
        self._want_compare: str | None = None
        self._workspace: tuple[str, ...] = ()  # the run dirs the workspace overlays
        self._ws_buffers: dict[str, SeriesBuffer] = {}
        self._reload = False
        self._full = False  # re-read finished runs' status too (after a resume)
        self._rows: dict[str, tuple] = {}  # run dir -> (Run, its RunRow)
        self._settings = False  # rows carry their run's settings (a filter asked once)
        self._run_settings: dict[str, Mapping] = {}  # run dir -> its config's settings
        self._provenance: dict[str, tuple] = {}  # run dir -> (mtime, its brief)
        self._scanned: list | None = None  # the scanner's last answer, and whether the
        self._rows_with_settings = False  # rows made from it carry settings

    # ------------------------------------------------------------ called by the UI thread
    def select_run(self, key: str | None) -> int:
        """Follow another run's log from its start and send its series; returns the
        generation that its lines will carry, so that lines read for an earlier selection
        are never shown."""
        with self._lock:
            self._selected = key
            self._log_gen += 1
            self._log_tail = rd.FileTail(Path(key) / rd.LOG) if key else None
            gen = self._log_gen
        self._wake.set()
        return gen

    def select_workspace(self, keys) -> None:
        """The runs whose curves the workspace overlays (their metrics are read on from
        where the last poll stopped, each one's own buffer)."""
        with self._lock:
            self._workspace = tuple(keys)
        self._wake.set()

    def select_compare(self, name: str | None) -> None:
        with self._lock:
            self._want_compare = name
        self._wake.set()

    def rescan(self) -> None:
        """Read every run's status again at the next poll, the finished ones too (the
        UI just resumed one)."""
        with self._lock:
            self._full = True
        self._wake.set()

    def want_settings(self) -> None:
        """From now on rows carry their run's settings (read once per finished run): a
        filter compares one (lr=0.1)."""
        with self._lock:
            if self._settings:
                return
            self._settings = True
        self._wake.set()

    def ask_reload(self) -> None:
        with self._lock:
            self._reload = True
        self._wake.set()

    # ------------------------------------------------------------ the watcher's thread
    def wait(self, seconds: float) -> None:
        """Sleep until the next poll is due, or until the UI asks for something."""
        self._wake.wait(seconds)
        self._wake.clear()

    def poll(self, now: float | None = None) -> Snapshot:
        now = now or time.time()
        with self._lock:
            force, self._reload = self._reload, False
            full, self._full = self._full, False
        self.lab.refresh(force)
        runs_dir = self.lab.runs_dir
        rows = self._read_runs(runs_dir, now, full or force)
        changed = rows is not self._last_rows and \
            [(r.key, r.state, r.epoch, r.tags, r.note) for r in rows] != \
            [(r.key, r.state, r.epoch, r.tags, r.note) for r in self._last_rows]
        self._last_rows = rows
        with self._lock:
            selected, gen, tail, want = (self._selected, self._log_gen, self._log_tail,
                                         self._want_compare)
            workspace = self._workspace
            lines = tuple(b.decode("utf-8", "replace") for b in tail.read_lines()) \
                if tail else ()
        return Snapshot(
            config=self.lab.config, config_error=self.lab.error,
            config_version=self.lab.version, runs_dir=runs_dir, rows=rows,
            runs_changed=changed, series=self._series(selected),
            log_lines=lines, log_gen=gen, compare=self._compare_for(want, changed, runs_dir),
            workspace=self._workspace_series(workspace),
            workspace_settings=MappingProxyType({k: self._settings_of(k) for k in workspace}),
            workspace_provenance=MappingProxyType({k: self._provenance_of(k)
                                                   for k in workspace}),
            gpus=self.gpu.read(), gpu_error=self.gpu.error,
            weights=MappingProxyType(weights_states(self.lab.config)))

    def _read_runs(self, runs_dir: Path, now: float, full: bool) -> tuple[RunRow, ...]:
        """Every run from its status.json alone (re-read only when it changed); a
        finished run's row is made once, a live run's every poll (its clock moves)."""
        if self._scanner is None or self._scanner.runs_dir != runs_dir:
            self._scanner, self._rows, self._scanned = launch.scanner(runs_dir), {}, None
        runs, want = self._scanner.scan(full), self._settings
        if runs is self._scanned and want == self._rows_with_settings:
            return self._last_rows  # nothing moved: the same rows, nothing to compare
        self._scanned, self._rows_with_settings = runs, want
        rows, kept = [], {}
        for run in runs:
            old = self._rows.get(str(run.path))
            row = old[1] if old and old[0] is run and run.raw_state in rd.FINAL_STATES \
                and (old[1].settings is not None or not want) \
                else run_row(run, now, self._settings_of(str(run.path)) if want else None)
            kept[str(run.path)] = (run, row)
            rows.append(row)
        self._rows = kept
        return tuple(rows)

    def _settings_of(self, key: str) -> Mapping:
        got = self._run_settings.get(key)
        if got is None:  # config.toml is written once; cached only once it is there
            got = MappingProxyType(rd.read_config(Path(key)).get("settings", {}))
            if got:
                self._run_settings[key] = got
        return got

    def _provenance_of(self, key: str) -> Mapping:
        """provenance.brief of the run's provenance.json, read again only when it was
        rewritten (a resume); empty without one."""
        path = Path(key) / PROVENANCE
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return MappingProxyType({})
        got = self._provenance.get(key)
        if got is None or got[0] != stamp:
            prov = rd.read_json(path)
            got = self._provenance[key] = (stamp, MappingProxyType(
                brief(prov) if isinstance(prov, dict) else {}))
        return got[1]

    def _workspace_series(self, keys: tuple[str, ...]) -> tuple[Series, ...]:
        self._ws_buffers = {k: self._ws_buffers.get(k) or SeriesBuffer(k) for k in keys}
        for b in self._ws_buffers.values():
            b.read()
        return tuple(self._ws_buffers[k].frozen() for k in keys)

    def _series(self, key: str | None) -> Series | None:
        """The selected run's curves: its metrics.jsonl read on from where the last poll
        stopped (from the start for a newly selected run)."""
        if key is None:
            self._buffer = None
            return None
        if self._buffer is None or self._buffer.key != key:
            self._buffer = SeriesBuffer(key)
        self._buffer.read()
        return self._buffer.frozen()

    def _compare_for(self, want: str | None, stale: bool, runs_dir) -> CompareData | None:
        """The wanted comparison (the first one until the UI says), computed again only
        when it changed, the config changed or a run changed state or epoch."""
        config = self.lab.config
        names = table_names(config) if config else []
        name = want if want in names else (names[0] if names else None)
        if name is None:
            self._compare = None
        elif stale or self._compare is None or self._compare.name != name \
                or self._compare_config is not config:
            self._compare, self._compare_config = compare_data(config, name, runs_dir), config
        return self._compare
