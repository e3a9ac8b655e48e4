"""Rotunda's terminal app: list, launch, watch and compare runs from the keyboard.

A viewer and a launcher: it reads experiments.toml and runs/, and starts
`python -m engine` in detached processes. It never imports torch.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import (DataTable, Footer, Header, Input, Label, Log, Static, TabbedContent,
                             TabPane)
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from engine import rundir as rd
from engine.analysis import (PCT, RATE, SECS, compare_table, curve, fmt, runs_table,
                             table_names)
from engine.config import ConfigError, apply_overrides
from engine.runner import (RunError, cancel, launch_detached, launch_sweep_detached,
                           resume_detached)

from .model import GpuMonitor, Lab, Snapshot, Watcher, downsample

VIEWS = ("experiments", "runs", "run", "compare")
STATE_STYLE = {"done": "green", "running": "bold yellow", "queued": "cyan", "failed": "red",
               "diverged": "magenta", "cancelled": "dim", "lost": "bold red"}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class ConfigReloaded(Message):
    pass


class Confirm(ModalScreen[bool]):
    BINDINGS = [("y", "answer(True)", "Yes"), ("n", "answer(False)", "No"),
                ("escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            yield Label("[b]y[/b] yes    [b]n[/b] / [b]esc[/b] no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class AskOverrides(ModalScreen[str | None]):
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.exp_name = name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Launch [b]{self.exp_name}[/b] with overrides "
                         "(KEY=VALUE separated by spaces, e.g. epochs=5 lr=0.05):")
            yield Input(placeholder="epochs=5 lr=0.05", id="overrides")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Pager(ModalScreen[None]):
    """Any text in a scrollable box; esc closes it."""

    BINDINGS = [("escape,q", "close", "Close")]

    def __init__(self, content) -> None:
        super().__init__()
        self.content = content

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(self.content)

    def action_close(self) -> None:
        self.dismiss(None)


class Help(Pager):
    BINDINGS = [("escape,q,question_mark", "close", "Close")]

    def __init__(self, bindings) -> None:
        rows = [f"  [b]{b.key_display or b.key:<10}[/b] {b.description}"
                for b in bindings if isinstance(b, Binding) and b.description]
        super().__init__(
            "[b]Rotunda keys[/b]\n\n" + "\n".join(rows) +
            "\n\n  [b]arrows[/b]     move in tables and lists"
            "\n  [b]ctrl+p[/b]     command palette: every action by name"
            "\n\nRuns are separate processes: quitting leaves them running, and the app "
            "re-attaches when started again.\n[dim]esc closes this help[/dim]")


class RotundaApp(App):
    TITLE = "Rotunda"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("1", "view('experiments')", "Experiments", show=False),
        Binding("2", "view('runs')", "Runs", show=False),
        Binding("3", "view('run')", "Run detail", show=False),
        Binding("4", "view('compare')", "Compare", show=False),
        Binding("tab", "cycle_view(1)", "Next view", priority=True, show=False),
        Binding("shift+tab", "cycle_view(-1)", "Previous view", priority=True, show=False),
        Binding("enter", "open", "Launch/open", show=False),
        Binding("o", "launch_with", "Launch with overrides", show=False),
        Binding("c", "cancel_run", "Cancel run"),
        Binding("r", "resume_run", "Resume run", show=False),
        Binding("e", "export", "Export"),
        Binding("g", "gallery", "Gallery: test images, true and predicted", show=False),
        Binding("left_square_bracket", "switch_compare(-1)", "Previous comparison",
                key_display="[", show=False),
        Binding("right_square_bracket", "switch_compare(1)", "Next comparison",
                key_display="]", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("R", "reload", "Reload experiments.toml", show=False),
    ]

    def __init__(self, config_path: str | Path = "experiments.toml",
                 runs_dir: str | Path | None = None, gpu: bool = True,
                 poll_s: float = 0.5) -> None:
        super().__init__()
        self.lab = Lab(config_path, runs_dir)
        self.watcher = Watcher(self.lab, GpuMonitor(enabled=gpu))
        self.poll_s = poll_s
        self.rows: list = []
        self.current_run: str | None = None
        self.filter_text = ""
        self.plots_dirty = False
        self.gpu_history: dict[int, list[float]] = {}
        self.compare_index = 0
        self.log_gen = 0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="gpu")
        with TabbedContent(initial="experiments"):
            with TabPane("1 Experiments", id="experiments"):
                yield Static("", id="config-error")
                yield DataTable(id="exp-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="exp-detail")
            with TabPane("2 Runs", id="runs"):
                yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            with TabPane("3 Run", id="run"):
                yield Static("No run selected: pick one in Runs (2) and press Enter.",
                             id="run-title")
                with Grid(id="plots"):
                    for pid in ("loss", "acc", "steps", "lr", "speed", "mem"):
                        yield PlotextPlot(id=f"plot-{pid}")
                yield Log(id="run-log", max_lines=2000)
            with TabPane("4 Compare", id="compare"):
                yield Static("", id="compare-title")
                yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
                yield PlotextPlot(id="compare-plot")
                yield Static("", id="compare-notes")
        yield Input(placeholder="filter experiments and runs (esc clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = str(self.lab.config_path)
        runs = self.query_one("#runs-table", DataTable)
        for name, _ in runs_table([]).columns:
            runs.add_column(name, key=name)
        self.query_one("#filter", Input).display = False
        for pid, title in (("loss", "loss (train, test)"), ("acc", "accuracy (train, test)"),
                           ("steps", "step loss"), ("lr", "learning rate"),
                           ("speed", "images/s"), ("mem", "GPU memory peak, MiB")):
            plt = self.query_one(f"#plot-{pid}", PlotextPlot).plt
            plt.title(title)
        self.show_config()
        self.set_interval(0.25, self.redraw_plots)
        self.watch_runs()

    # ------------------------------------------------------------------ background
    @work(thread=True, exclusive=True, group="watch", exit_on_error=False)
    def watch_runs(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                if self.lab.changed_on_disk():
                    self.lab.reload()
                    self.post_message(ConfigReloaded())
                self.post_message(SnapshotReady(self.watcher.poll()))
            except Exception as exc:  # a run folder changing mid-read, a hand-edited file:
                self.log.error(f"poll failed: {exc!r}")  # the next poll tries again
            time.sleep(self.poll_s)

    def on_config_reloaded(self, _: ConfigReloaded) -> None:
        self.show_config()
        self.notify("experiments.toml reloaded" if not self.lab.error else "experiments.toml "
                    "has an error", severity="information" if not self.lab.error else "error")

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "watch")

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self._exit or not self.query("#runs-table"):
            return  # quitting: the widgets are going away
        snap = message.snapshot
        self.rows = snap.rows
        self.update_runs_table(snap.runs_changed)
        if snap.runs_changed:
            self.update_experiments_table()
            self.update_compare_table()
        if self.current_run is None and snap.rows:
            self.select_run(snap.rows[0].key)
        if self.current_run in snap.series:
            self.plots_dirty = True
        if snap.log_gen == self.log_gen and snap.log_lines:
            self.query_one("#run-log", Log).write_lines(snap.log_lines)
        self.update_run_title()
        self.update_gpu(snap)

    # ------------------------------------------------------------------ experiments
    def show_config(self) -> None:
        err = self.query_one("#config-error", Static)
        err.update(Text(self.lab.error or ""))
        err.display = bool(self.lab.error)
        table = self.query_one("#exp-table", DataTable)
        if not table.columns:
            for col in ("Experiment", "Task", "Ep.", "Starts from", "Expect", "Latest", "Model",
                        "Data"):
                table.add_column(col, key=col)
        self.update_experiments_table()
        self.compare_index = 0
        self.update_compare_table()

    def _matches(self, *fields) -> bool:
        f = self.filter_text.lower()
        return not f or any(f in str(x).lower() for x in fields)

    def update_experiments_table(self) -> None:
        table = self.query_one("#exp-table", DataTable)
        selected = self.selected_key(table)
        table.clear()
        config = self.lab.config
        if config is None:
            self.query_one("#exp-detail", Static).update("")
            return
        runs = self.watcher.runs
        latest = {}
        for r in runs:  # newest first: keep the first seen
            latest.setdefault(r.experiment, r)
        for group, exps in config.groups().items():
            shown = [e for e in exps if self._matches(group, e.name, e.title, e.description)]
            if shown and group:
                table.add_row(Text(group, style="bold underline"), key=f"group:{group}")
            for e in shown:
                dep, dep_state = self.lab.dependency_state(e.name, runs)
                starts = "random" if not e.settings.init else (
                    Text(f"{dep} ({dep_state})", style="green" if dep_state == "done" else "yellow")
                    if dep else Path(e.settings.init).name)
                last = latest.get(e.name)
                table.add_row(f" {e.name}", e.settings.task, str(e.settings.epochs), starts,
                              fmt(e.expect.value if e.expect else None, PCT),
                              state_text(last.state) if last else "-", e.settings.model,
                              e.settings.dataset, key=e.name)
        plans = [w for w in [*config.sweeps.values(), *config.ablations.values()]
                 if self._matches(w.group, w.name, w.title, w.base)]
        groups_seen = set()
        for w in plans:
            if w.group not in groups_seen:
                groups_seen.add(w.group)
                table.add_row(Text(w.group, style="bold underline"), key=f"group:sweeps:{w.group}")
            mine = [r for r in runs if r.experiment == w.name]
            done = len({r.run_id for r in mine if r.raw_state == "done"})
            live = [r for r in mine if r.state in rd.LIVE_STATES]
            ablation = w.name in config.ablations
            table.add_row(f" {w.name}", "ablation" if ablation else "sweep", str(len(w.points())),
                          w.base, "-", state_text(live[0].state) if live else f"{done} runs done",
                          ", ".join(k for k, _ in (w.components if ablation else w.axes)), "",
                          key=f"sweep:{w.name}")
        if selected is None or selected.startswith("group:"):
            selected = next(iter(e for g in config.groups().values() for e in g
                                 if e.name in [k.value for k in table.rows]), None)
            selected = selected.name if selected else None
        self.restore_cursor(table, selected)
        self.update_experiment_detail()

    def update_experiment_detail(self) -> None:
        detail = self.query_one("#exp-detail", Static)
        name = self.selected_key(self.query_one("#exp-table", DataTable))
        if name and name.startswith("sweep:") and self.lab.config:
            w = self.lab.config.plan(name[len("sweep:"):])
            if w.name in self.lab.config.ablations:
                what = (f"[dim]components ({w.mode.replace('_', '-')}, {w.seeds} seeds):[/dim] "
                        + "; ".join(f"{c}: {' '.join(o)}" for c, o in w.components))
            else:
                what = "[dim]axes:[/dim] " + "; ".join(f"{k} in {list(v)}" for k, v in w.axes)
            detail.update(f"[b]{w.title}[/b]  ({w.name})\n[dim]base:[/dim] {w.base}\n{what}\n"
                          f"[dim]runs:[/dim] {len(w.points())}; Enter runs those not done yet "
                          "(and a missing pretraining run first), one after another")
            return
        if not name or not self.lab.config or name not in self.lab.config.experiments:
            detail.update("")
            return
        e = self.lab.config.experiments[name]
        s = e.settings
        keys = ", ".join(f"{k}={v}" for k, v in e.overrides.items()
                         if k not in ("group",)) or "defaults only"
        dep, dep_state = self.lab.dependency_state(name, self.watcher.runs)
        lines = [f"[b]{e.title}[/b]  ({e.name})", e.description or "",
                 f"[dim]settings:[/dim] {keys}",
                 f"[dim]trains:[/dim] {', '.join(s.train_layers)}; batch {s.batch_size}, "
                 f"{s.optimizer} lr {s.lr:g}, {s.schedule}"]
        if e.expect:
            lines.append(f"[dim]expected:[/dim] {e.expect.metric} about {fmt(e.expect.value, PCT)}")
        if dep:
            lines.append(f"[dim]needs:[/dim] {dep}'s {s.init_checkpoint} checkpoint: {dep_state}")
        detail.update("\n".join(lines))

    @on(DataTable.RowHighlighted, "#exp-table")
    def _exp_highlighted(self) -> None:
        self.update_experiment_detail()

    # ------------------------------------------------------------------ runs
    def update_runs_table(self, structure_changed: bool) -> None:
        table = self.query_one("#runs-table", DataTable)
        rows = [r for r in self.rows if self._matches(r.experiment, r.run_id, r.state)]
        keys = [r.key for r in rows]
        current = [k.value for k in table.rows]
        if structure_changed or keys != current:
            selected = self.selected_key(table)
            table.clear()
            for r in rows:
                table.add_row(*self.run_cells(r), key=r.key)
            self.restore_cursor(table, selected)
            return
        for r in rows:
            if r.state in ("running", "queued"):
                for (col, _), cell in zip(runs_table([]).columns, self.run_cells(r)):
                    table.update_cell(r.key, col, cell)

    @staticmethod
    def run_cells(r) -> list:
        return [state_text(r.state), r.experiment, r.run_id, f"{r.epoch}/{r.epochs}",
                fmt(r.best_acc, PCT), fmt(r.images_per_s, RATE), fmt(r.elapsed, SECS),
                fmt(r.eta, SECS)]

    def select_run(self, key: str) -> None:
        if key == self.current_run:
            return
        self.current_run = key
        self.log_gen = self.watcher.select_log(key)
        self.query_one("#run-log", Log).clear()
        self.plots_dirty = True
        self.update_run_title()

    def row(self, key: str | None):
        return next((r for r in self.rows if r.key == key), None)

    def update_run_title(self) -> None:
        r = self.row(self.current_run)
        if r is None:
            return
        text = Text.assemble(state_text(r.state), f" {r.experiment}/{r.run_id} ep {r.epoch}/"
                             f"{r.epochs} best {fmt(r.best_acc, PCT)} "
                             f"{fmt(r.images_per_s, RATE)} img/s {fmt(r.elapsed, SECS)}")
        if r.eta is not None:
            text.append(f" ETA {fmt(r.eta, SECS)}")
        summary = rd.read_json(Path(r.key) / rd.SUMMARY) if r.state == "done" else None
        if summary:
            text.append(f"\nacc {fmt(summary.get('test_acc_at_best'), PCT)} at epoch "
                        f"{summary.get('best_epoch')} (lowest test loss), final "
                        f"{fmt(summary.get('final_test_acc'), PCT)}, wall "
                        f"{fmt(summary.get('wall_s'), SECS)}, "
                        f"{summary.get('params_trainable', 0):,} trained params")
        elif r.error:
            text.append(f"\n{r.error}", style="red")
        self.query_one("#run-title", Static).update(text)

    def redraw_plots(self) -> None:
        if not self.plots_dirty or self.current_run is None:
            return
        self.plots_dirty = False
        series = self.watcher.series.get(self.current_run)
        if series is None:
            return
        ep = list(series.epochs)
        x = [m["epoch"] for m in ep]

        def col(name):
            pts = [(m["epoch"], m[name]) for m in ep if m.get(name) is not None]
            return [p[0] for p in pts], [p[1] for p in pts]

        sx, sy = downsample(list(series.step_x), list(series.step_loss))
        lx, ly = downsample(list(series.step_x), [v or 0.0 for v in series.step_lr])
        self.draw("loss", [(*col("train_loss"), "train"), (*col("test_loss"), "test")])
        self.draw("acc", [(*col("train_acc"), "train"), (*col("test_acc"), "test")])
        self.draw("steps", [(sx, sy, "")])
        self.draw("lr", [(lx, ly, "")] if lx else [(*col("lr"), "")])
        self.draw("speed", [(*col("images_per_s"), "")])
        mem = col("gpu_mem_peak_mb")
        self.draw("mem", [(*mem, "")] if mem[0] else [], empty="CPU run: no GPU memory" if x else "")

    def draw(self, pid: str, lines: list, empty: str = "") -> None:
        widget = self.query_one(f"#plot-{pid}", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        for xs, ys, label in lines:
            if xs:
                plt.plot(xs, ys, label=label or None, marker="braille")
        if empty and not lines:
            plt.title(empty)
        widget.refresh()

    # ------------------------------------------------------------------ compare
    def update_compare_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        notes = self.query_one("#compare-notes", Static)
        title = self.query_one("#compare-title", Static)
        table.clear(columns=True)
        name = self.selected_compare()
        if not name:
            title.update("")
            notes.update("No comparisons: add a [compare.NAME] table to experiments.toml."
                         if self.lab.config else "")
            return
        names = table_names(self.lab.config)
        t = compare_table(self.lab.config, name, self.lab.runs_dir)
        title.update(Text.assemble((t.title, "bold"), f"  ({name}, {names.index(name) + 1}/"
                                   f"{len(names)}; [ and ] switch, e exports)"))
        for col, _ in t.columns:
            table.add_column(col, key=col)
        for row in t.formatted():
            table.add_row(*row)
        notes.update(Text("\n".join(t.notes), style="dim"))
        self.draw_compare_plot(name, t)

    def draw_compare_plot(self, name: str, t) -> None:
        """A sweep with `plot` gets accuracy against that axis (log scale, one line per
        base: the few-labels figure); an ablation gets its mean accuracies as bars."""
        widget = self.query_one("#compare-plot", PlotextPlot)
        config = self.lab.config
        got = curve(config, name, self.lab.runs_dir, t)
        bars = [(row[0], row[1]) for row in t.rows if row[1] is not None] \
            if name in config.ablations else []
        widget.display = bool(got and any(got[1].values())) or bool(bars)
        if not widget.display:
            return
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        if bars:
            bars.reverse()  # plotext stacks horizontal bars upwards: baseline on top
            plt.bar([b[0] for b in bars], [100 * b[1] for b in bars], orientation="horizontal",
                    width=0.3)
            plt.title("mean test accuracy, %")
            lo = min(100 * b[1] for b in bars)
            plt.xlim(max(0.0, lo - 5), 100)
        else:
            # log10 by hand: plotext 5.3's xscale("log") breaks the legend for 2-point lines
            axis, series = got
            series = {b: [p for p in pts if p[0] > 0] for b, pts in series.items()}
            for base, pts in series.items():
                if pts:
                    plt.plot([math.log10(p[0]) for p in pts], [100 * p[1] for p in pts],
                             label=base, marker="braille")
            xs = sorted({p[0] for pts in series.values() for p in pts})
            plt.xticks([math.log10(x) for x in xs], [f"{x:g}" for x in xs])
            plt.xlabel(axis)
            plt.title(f"test accuracy, % against {axis} (log)")
        widget.refresh()

    def selected_compare(self) -> str | None:
        names = table_names(self.lab.config) if self.lab.config else []
        return names[self.compare_index % len(names)] if names else None

    def action_switch_compare(self, step: int) -> None:
        self.compare_index += step
        self.action_view("compare")
        self.update_compare_table()

    # ------------------------------------------------------------------ GPU panel
    def update_gpu(self, snap: Snapshot) -> None:
        bar = self.query_one("#gpu", Static)
        if snap.gpus is None:
            bar.update(Text(f"GPU: {snap.gpu_error}; runs use the CPU", style="dim"))
            return
        parts = []
        for g in snap.gpus:
            hist = self.gpu_history.setdefault(g["index"], [])
            hist.append(g["used_mb"] / max(1.0, g["total_mb"]))
            del hist[:-20]
            spark = "".join(" ▁▂▃▄▅▆▇█"[min(8, int(v * 8.999))] for v in hist)
            parts.append(f"GPU{g['index']} {g['name']}: {g['used_mb'] / 1024:.1f}/"
                         f"{g['total_mb'] / 1024:.1f} GiB {spark} util {g['util']}%")
        bar.update("  |  ".join(parts))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def selected_key(table: DataTable) -> str | None:
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    @staticmethod
    def restore_cursor(table: DataTable, key: str | None) -> None:
        if key is None:
            return
        try:
            table.move_cursor(row=table.get_row_index(key), animate=False)
        except Exception:
            pass

    def active_view(self) -> str:
        return self.query_one(TabbedContent).active

    def focus_view(self, view: str) -> None:
        target = {"experiments": "#exp-table", "runs": "#runs-table", "run": "#run-log",
                  "compare": "#compare-table"}[view]
        self.query_one(target).focus()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.focus_view(event.pane.id)

    def selected_run_key(self) -> str | None:
        if self.active_view() == "runs":
            return self.selected_key(self.query_one("#runs-table", DataTable))
        if self.active_view() == "run":
            return self.current_run
        return None

    # ------------------------------------------------------------------ actions
    def action_view(self, view: str) -> None:
        self.query_one(TabbedContent).active = view

    def action_cycle_view(self, step: int) -> None:
        if isinstance(self.screen, ModalScreen):
            self.screen.focus_next() if step > 0 else self.screen.focus_previous()
            return
        i = VIEWS.index(self.active_view())
        self.action_view(VIEWS[(i + step) % len(VIEWS)])

    def action_help(self) -> None:
        self.push_screen(Help(self.BINDINGS))

    def action_open(self) -> None:
        view = self.active_view()
        if view == "experiments":
            self.action_launch()
        elif view == "runs":
            key = self.selected_key(self.query_one("#runs-table", DataTable))
            if key:
                self.select_run(key)
                self.action_view("run")

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_launch(self, overrides: list[str] | None = None) -> None:
        config = self.lab.config
        if config is None:
            self.notify(self.lab.error or "no experiments", severity="error")
            return
        name = self.selected_key(self.query_one("#exp-table", DataTable))
        overrides = overrides or []
        if name and name.startswith("sweep:"):
            sweep = name[len("sweep:"):]
            launch_sweep_detached(config, sweep, overrides, self.lab.runs_dir)
            kind = "ablation" if sweep in config.ablations else "sweep"
            self.notify(f"launched {kind} {sweep}: its runs go one after another")
            return
        if not name or name not in config.experiments:
            return
        try:
            apply_overrides(config.experiments[name].settings, overrides)
        except ConfigError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        dep, dep_state = self.lab.dependency_state(name, self.watcher.runs)
        if dep and dep_state == "missing":
            def answered(yes: bool | None) -> None:
                if yes:
                    self.launch(name, overrides, with_deps=True)
            self.push_screen(Confirm(
                f"[b]{name}[/b] starts from [b]{dep}[/b]'s checkpoint, and {dep} has no "
                f"successful run.\n\nLaunch {dep} first, then {name}?"), answered)
            return
        self.launch(name, overrides)

    def launch(self, name: str, overrides: list[str], with_deps: bool = False) -> None:
        try:
            run_id, _ = launch_detached(self.lab.config, name, overrides, self.lab.runs_dir,
                                        with_deps=with_deps)
        except OSError as exc:
            self.notify(f"cannot launch {name}: {exc}", severity="error")
            return
        what = f"{name} (after its dependencies)" if with_deps else name
        self.notify(f"launched {what}: {run_id}; it waits as queued while the GPU is busy")

    def action_launch_with(self) -> None:
        if self.active_view() != "experiments" or self.lab.config is None:
            return
        name = self.selected_key(self.query_one("#exp-table", DataTable))
        if not name or name.startswith("group:"):
            return

        def got(text: str | None) -> None:
            if text is not None:
                self.action_launch(text.split())
        self.push_screen(AskOverrides(name), got)

    def action_cancel_run(self) -> None:
        key = self.selected_run_key()
        r = self.row(key)
        if r is None:
            self.notify("select a run in Runs (2) or Run (3) first")
            return
        if r.state not in rd.LIVE_STATES:
            self.notify(f"{r.experiment}/{r.run_id} is {r.state}, not running")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                try:
                    self.notify(cancel(Path(r.key)))
                except (RunError, OSError) as exc:
                    self.notify(str(exc), severity="error")
        self.push_screen(Confirm(f"Cancel [b]{r.experiment}/{r.run_id}[/b] ({r.state}, epoch "
                                 f"{r.epoch}/{r.epochs})?\nIts last checkpoint stays and it can "
                                 "be resumed later (r)."), answered)

    def action_resume_run(self) -> None:
        r = self.row(self.selected_run_key())
        if r is None:
            return
        if r.state not in ("lost", "cancelled", "failed", "diverged"):
            self.notify(f"{r.experiment}/{r.run_id} is {r.state}: nothing to resume")
            return
        resume_detached(Path(r.key), self.lab.runs_dir)
        self.notify(f"resuming {r.experiment}/{r.run_id} from its last checkpoint")

    def action_gallery(self) -> None:
        r = self.row(self.selected_run_key() or self.current_run)
        if r is None or not (Path(r.key) / rd.CHECKPOINTS / "best.pt").exists():
            self.notify("pick a run with a checkpoint (Runs, 2) first")
            return
        self.notify(f"scoring 20 test images of {r.experiment}/{r.run_id}...")
        self.gallery_worker(r.key, max(40, self.size.width - 10))

    @work(thread=True, exit_on_error=False, group="gallery")
    def gallery_worker(self, key: str, width: int) -> None:
        """The engine scores the images in its own process: the app never imports torch."""
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)
                   + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-m", "engine", "gallery", key, "--ansi",
                               "--width", str(width)], capture_output=True, text=True,
                              env=env, timeout=300)
        if proc.returncode == 0:
            self.call_from_thread(self.push_screen, Pager(Text.from_ansi(proc.stdout)))
        else:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            self.call_from_thread(self.notify, lines[-1] if lines else "gallery failed",
                                  severity="error")

    def action_export(self) -> None:
        from engine.export import export_named, export_table, plot_runs

        view = self.active_view()
        reports = (self.lab.config.root if self.lab.config else self.lab.config_path.parent) / "reports"
        try:
            if view == "compare" and self.selected_compare():
                paths = export_named(self.lab.config, self.selected_compare(),
                                     self.lab.runs_dir, reports)
            elif view == "run" and self.current_run:
                r = self.row(self.current_run)
                paths = [plot_runs([(r.experiment, Path(r.key))], Path(r.key) / "curves.png",
                                   f"{r.experiment}/{r.run_id}")]
            else:
                paths = export_table(runs_table(self.watcher.runs), reports, "runs")
        except (OSError, ValueError) as exc:
            self.notify(f"export failed: {exc}", severity="error")
            return
        self.notify("exported: " + ", ".join(str(p) for p in paths), timeout=10)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.update_experiments_table()
        self.update_runs_table(True)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.focus_view(self.active_view())

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.focus_view(self.active_view())

    def action_reload(self) -> None:
        self.lab.reload()
        self.show_config()
        self.notify(self.lab.error or "experiments.toml reloaded",
                    severity="error" if self.lab.error else "information")

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if isinstance(b, Binding) and b.description and b.action != "quit":
                yield SystemCommand(b.description, f"key: {b.key_display or b.key}",
                                    lambda a=b.action: self.run_action(a))
