"""5 Workspace: several runs' curves overlaid on shared axes, each run in its colour
everywhere (legend, table, charts), the highlighted run's settings beside them. Runs
come from Runs (space marks, w takes them) or from a comparison (w in Compare)."""
from __future__ import annotations

import math
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import DataTable, Static

from engine.core.table import PCT, fmt
from engine.live.snapshot import Series, Snapshot
from tui.screens import AskText
from tui.views.base import View, restore_cursor, selected_key
from tui.widgets.plots import TitledPlot, log_ticks, run_colour
from tui.widgets.table import Table

DEFAULT_METRICS = ("test_acc", "train_acc", "test_loss", "train_loss")
SMOOTHING = (0.0, 0.6, 0.8, 0.9, 0.95)  # ~ steps through these (TensorBoard's slider)
X_AXES = ("epoch", "step", "wall")  # x: epochs, optimiser steps, or the run's own minutes
STEP_LOSS = "step_loss"  # the step records' loss (every log_every steps), not an epoch's
NOT_PLOTTED = {"epoch", "kind", "time"}
SMALL_H = 30  # below this many rows the workspace draws two plots, larger


def smoothed(ys: list[float], weight: float) -> list[float]:
    """TensorBoard's exponential moving average, debiased so the curve starts at its
    first point rather than at zero."""
    if not weight:
        return list(ys)
    out, last, n = [], 0.0, 0
    for y in ys:
        n += 1
        last = weight * last + (1 - weight) * y
        out.append(last / (1 - weight ** n))
    return out


def metric_points(s: Series, metric: str, x_axis: str, steps: int | None = None
                  ) -> tuple[list, list]:
    """(x, y) of one epoch metric (or the step loss): x is the epoch, the optimiser step
    (epochs times `steps` a epoch), or the run's own minutes (the sum of its epochs'
    times, spread evenly over each epoch's steps for the step loss)."""
    steps = steps or 1
    if metric == STEP_LOSS:
        per = {m["epoch"]: m.get("epoch_s") or 0.0 for m in s.epochs}
        start = {e: sum(t for k, t in per.items() if k < e) for e in per}
        def at(step):
            e = math.ceil(step / steps)
            return {"step": step, "epoch": step / steps}.get(
                x_axis, (start.get(e, 0.0) + per.get(e, 0.0) * (step / steps - e + 1)) / 60)
        return [at(x) for x in s.step_x], list(s.step_loss)
    xs, ys, wall = [], [], 0.0
    for m in s.epochs:
        wall += m.get("epoch_s") or 0.0
        if m.get(metric) is not None:
            xs.append({"epoch": m["epoch"], "step": m["epoch"] * steps}.get(x_axis, wall / 60))
            ys.append(m[metric])
    return xs, ys


def logged_metrics(series: tuple) -> list[str]:
    """Every numeric epoch metric any of the runs logged, in first-seen order."""
    seen: dict[str, None] = {}
    if any(s.step_x for s in series):
        seen[STEP_LOSS] = None
    for s in series:
        for m in s.epochs:
            for k, v in m.items():
                if k not in NOT_PLOTTED and isinstance(v, (int, float)) \
                        and not isinstance(v, bool):
                    seen.setdefault(k)
    return list(seen)


def differing(settings: dict) -> set[str]:
    """The settings whose values are not the same in every run."""
    keys = {k for s in settings.values() for k in s}
    return {k for k in keys if len({repr(s.get(k)) for s in settings.values()}) > 1}


class WorkspaceView(View):
    ID, TAB, KEY, FOCUS = "workspace", "Workspace", "5", "#ws-runs"
    BINDINGS = [Binding("m", "metrics", "Metrics"), Binding("y", "log_y", "Log y"),
                Binding("x", "x_axis", "x: epoch/step/wall"),
                Binding("tilde", "smooth", "Smooth", key_display="~"),
                Binding("p", "pin", "Pin"), Binding("f", "full", "Full screen"),
                Binding("a", "all_settings", "All settings", show=False),
                Binding("delete", "drop", "Drop run", show=False)]

    keys: tuple = ()  # the runs shown, in order
    metrics: tuple = DEFAULT_METRICS
    log_y = False
    x_axis = "epoch"
    smoothing = 0.0
    pinned: str | None = None
    full: int | None = None  # the plot shown alone, or None for the grid
    every_setting = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="ws-top"):
            with Grid(id="ws-plots"):
                for i in range(len(DEFAULT_METRICS)):
                    yield TitledPlot(id=f"ws-plot-{i}")
            yield Static("", id="ws-side")
        with Vertical(id="ws-bottom"):
            yield Static("", id="ws-status")
            yield Table(id="ws-runs", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.show_empty()

    def on_resize(self) -> None:
        if self.keys:
            self.redraw()

    def take(self, keys) -> None:
        """Overlay these runs (the app calls this from Runs' and Compare's w)."""
        self.keys = tuple(dict.fromkeys(k for k in keys if k))
        if self.pinned not in self.keys:
            self.pinned = None
        self.app.watcher.select_workspace(self.keys)
        self.redraw()

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        """Drawn again only when its runs' series or rows moved (a finished run's row is
        the same object poll after poll; an empty workspace has nothing to draw)."""
        moved = len(snap.workspace) != len(before.workspace) or any(
            a is not b for a, b in zip(snap.workspace, before.workspace))
        if self.keys and (moved or any(snap.row(k) is not before.row(k) for k in self.keys)):
            self.redraw()

    def series(self) -> list[Series]:
        ws = [s for s in self.snap.workspace if s.key in self.keys]
        if self.pinned:  # drawn last: on top
            ws.sort(key=lambda s: s.key == self.pinned)
        return ws

    def show_empty(self) -> None:
        self.query_one("#ws-status", Static).update(Text(
            "No runs here yet: mark runs in Runs (2) with space and press w, or press w on "
            "a comparison (4).", style="dim"))

    def redraw(self) -> None:
        if not self.keys:
            self.show_empty()
        else:
            self.query_one("#ws-status", Static).update(Text(
                f"{len(self.keys)} runs; x {self.x_axis}{', log y' if self.log_y else ''}"
                f"{f', smoothing {self.smoothing:g}' if self.smoothing else ''}"
                f"{'; pinned ' + Path(self.pinned).name if self.pinned else ''}"
                "  (m metrics, y log, x axis, ~ smooth, p pin, f full screen, a settings, "
                "del drops a run)", style="dim"))
        self.fill_table()
        series = self.series()
        grid = self.query_one("#ws-plots", Grid)  # one plot alone fills the grid
        room = 2 if self.outer_size.height < SMALL_H else len(DEFAULT_METRICS)  # 80x24: two
        shown = 1 if self.full is not None else min(len(self.metrics), room)
        grid.styles.grid_size_columns = 1 if shown == 1 else 2
        grid.styles.grid_size_rows = 1 if shown <= 2 else 2
        for i in range(len(DEFAULT_METRICS)):
            plot = self.query_one(f"#ws-plot-{i}", TitledPlot)
            plot.display = self.full == i if self.full is not None else i < shown
            if i < len(self.metrics) and plot.display:
                self.draw(plot, self.metrics[i], series)
            elif i >= len(self.metrics):
                plot.display = False
        self.show_side()

    def draw(self, plot: TitledPlot, metric: str, series: list[Series]) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        scale = 100 if metric.endswith("acc") else 1
        values = []
        for s in series:
            r = self.snap.row(s.key)
            xs, ys = metric_points(s, metric, self.x_axis, r.steps if r else None)
            ys = smoothed([scale * y for y in ys], self.smoothing)
            if self.log_y:
                xs, ys = zip(*[(x, y) for x, y in zip(xs, ys) if y > 0]) if any(
                    y > 0 for y in ys) else ((), ())
                values += ys
                ys = [math.log10(y) for y in ys]
            if xs:
                plt.plot(list(xs), list(ys), color=run_colour(s.key), marker="braille")
        if self.log_y and values:
            ticks = log_ticks(min(values), max(values))
            plt.yticks([math.log10(t) for t in ticks], [f"{t:.3g}" for t in ticks])
        plt.xlabel("minutes" if self.x_axis == "wall" else self.x_axis)
        plot.set_title(f"{metric.replace('_', ' ')}{' %' if scale == 100 else ''}"
                       f"{', log' if self.log_y else ''}")

    def fill_table(self) -> None:
        table = self.query_one("#ws-runs", DataTable)
        selected = selected_key(table)
        table.clear(columns=not table.columns)
        if not table.columns:
            for name in ("", "Run", "State", "Epoch", "Best acc"):
                table.add_column(name, key=name or "colour")
        for key in self.keys:
            r = self.snap.row(key)
            mark = Text("●" if key != self.pinned else "◆", style=f"bold {run_colour(key)}")
            name = f"{Path(key).parent.name}/{Path(key).name}"
            table.add_row(mark, name, r.state if r else "-",
                          f"{r.epoch}/{r.epochs}" if r else "-",
                          fmt(r.best_acc, PCT) if r else "-", key=key)
        restore_cursor(table, selected)

    @on(DataTable.RowHighlighted, "#ws-runs")
    def show_side(self) -> None:
        key = selected_key(self.query_one("#ws-runs", DataTable))
        side = self.query_one("#ws-side", Static)
        settings = dict(self.snap.workspace_settings)
        if key is None or key not in settings:
            side.update("")
            return
        mine, vary = settings[key], differing({k: settings[k] for k in self.keys
                                               if k in settings})
        shown = sorted(mine) if self.every_setting else sorted(vary)
        text = Text(f"{Path(key).parent.name}/{Path(key).name}\n", style=f"bold {run_colour(key)}")
        text.append("all settings (a: only those that differ)\n" if self.every_setting else
                    "settings that differ across these runs (a: all)\n", style="dim")
        for k in shown:
            text.append(f"{k} = {mine[k]!r}\n" if k in mine else f"{k}: not recorded\n")
        if not shown:
            text.append("(the same in every run)\n", style="dim")
        r = self.snap.row(key)
        if r is not None and r.summary:
            head = r.summary.get("headline", "test_acc")
            text.append(f"\n{head} at best {fmt(r.summary.get(head + '_at_best'), PCT)}, "
                        f"epoch {r.summary.get('best_epoch')}\n", style="green")
        if r is not None and r.effective:
            text.append(f"{r.effective}\n", style="dim")
        prov = self.snap.workspace_provenance.get(key) or {}
        if prov:
            text.append("\n")
            for k in ("commit", "torch", "device", "data", "seed"):
                text.append(f"{k} ", style="dim")
                text.append(f"{prov[k]}\n")
        else:
            text.append("\nno provenance.json (made before it was kept)\n", style="dim")
        text.append("d in Runs: what differs between two runs", style="dim")
        side.update(text)

    def selected_run(self) -> str | None:
        return selected_key(self.query_one("#ws-runs", DataTable))

    def action_metrics(self) -> None:
        known = logged_metrics(self.series()) or list(DEFAULT_METRICS)

        def got(text: str | None) -> None:
            if text is not None:
                picked = tuple(text.split()[:len(DEFAULT_METRICS)])
                self.metrics = picked or DEFAULT_METRICS
                self.full = None
                self.redraw()
        self.app.push_screen(AskText(
            f"Metrics to overlay (up to {len(DEFAULT_METRICS)}, separated by spaces; these "
            f"runs logged: {', '.join(known)}):",
            lambda text: [f"no run logged {m!r}" for m in text.split() if m not in known],
            " ".join(DEFAULT_METRICS), " ".join(self.metrics)), got)

    def action_log_y(self) -> None:
        self.log_y = not self.log_y
        self.redraw()

    def action_x_axis(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]
        self.redraw()

    def action_smooth(self) -> None:
        self.smoothing = SMOOTHING[(SMOOTHING.index(self.smoothing) + 1) % len(SMOOTHING)]
        self.redraw()

    def action_pin(self) -> None:
        key = self.selected_run()
        self.pinned = None if key == self.pinned else key
        self.redraw()

    def action_full(self) -> None:
        n = len(self.metrics)
        self.full = 0 if self.full is None else (self.full + 1 if self.full + 1 < n else None)
        self.redraw()

    def action_all_settings(self) -> None:
        self.every_setting = not self.every_setting
        self.show_side()

    def action_drop(self) -> None:
        key = self.selected_run()
        if key:
            self.take([k for k in self.keys if k != key])
