"""3 Run: one run's live plots, its log's tail and its summary; g shows the gallery, /
searches the log."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Static

from engine.core.table import DPCT, PCT, RATE, SECS, fmt
from engine.live.snapshot import RunRow, Series, Snapshot
from engine.perf.shown import fitted_points, headline
from engine.report.export import plot_runs
from tui.screens import Gallery
from tui.views.base import Export, View, state_text
from tui.widgets.log import FindBox, ReflowLog
from tui.widgets.plots import RunPlots

REDRAW_S = 0.25  # plots redraw at most 4 times a second, and only when their run moved


def epoch_text(r: RunRow) -> str:
    """Finished epochs, and the steps done in the one under way while it runs (or the
    phase after them: "4/4 probe 30/100")."""
    if r.phase:
        return f"{r.epoch}/{r.epochs} {r.phase}"
    step = f" ({r.step}/{r.steps})" if r.step and r.steps else ""
    return f"{r.epoch}/{r.epochs}{step}"


def run_title(r: RunRow) -> Text:
    """The state line, then the summary or the whole error (the header wraps)."""
    text = Text.assemble(state_text(r.state), f" {r.experiment}/{r.run_id} ep {epoch_text(r)} best {fmt(r.best_acc, PCT)} "
                         f"{fmt(r.images_per_s, RATE)} img/s {fmt(r.elapsed, SECS)}")
    if r.eta is not None:
        text.append(f" ETA {fmt(r.eta, SECS)}")
    s = r.summary if r.state == "done" else None
    if s:
        head = s.get("headline", "test_acc")  # k-NN accuracy for a self-supervised task
        probe = f", linear probe {fmt(s['linear_acc'], PCT)}" if "linear_acc" in s else ""
        text.append(f"\n{head.replace('_', ' ').replace('test ', '')} "
                    f"{fmt(s.get(head + '_at_best'), PCT)} at epoch {s.get('best_epoch')} "
                    f"({s.get('best_means', 'lowest test loss')}), final "
                    f"{fmt(s.get('final_' + head), PCT)}{probe}, wall "
                    f"{fmt(s.get('wall_s'), SECS)}, {s.get('params_trainable', 0):,} trained "
                    "params")
    elif r.error:
        text.append(f"\n{r.error}", style="red")
    if r.effective:
        text.append(f"\n{r.effective}", style="yellow" if "fell back" in r.effective else "dim")
    line = forecast_text(r)
    if line:
        text.append(f"\n{line}", style="magenta")
    return text


def forecast_text(r: RunRow) -> str | None:
    """The loss model's word on the run: while it runs (or stopped), what the last fit
    says; once done, what the fit made at half the run said against what happened."""
    half = ((r.summary or {}).get("forecast") or {}).get("at_50") if r.state == "done" \
        else None
    if not half:
        return headline(dict(r.forecast) if r.forecast else None, r.epochs)
    f = r.summary["forecast"]
    text = (f"forecast at epoch {half['epoch']}: final loss {half['final_loss']:.3g}, was "
            f"{f['actual_final_loss']:.3g} ({fmt(half['final_loss_error'], DPCT)}%)")
    if f.get("target"):
        said = f"epoch {half['eta_epoch']}" if half.get("eta_epoch") else "not reached"
        got = f"epoch {f['actual_epoch_to_target']}" if f.get("actual_epoch_to_target") \
            else "not reached"
        text += f"; target {100 * f['target']['value']:g}%: said {said}, was {got}"
    return text


class RunView(View):
    ID, TAB, KEY, FOCUS = "run", "Run", "3", "#run-log"
    LABEL = "Run detail"
    KEYS = (Binding("g", "gallery", "Gallery: test images, true and predicted", show=False),)
    BINDINGS = [Binding("c", "app.on_view('runs', 'cancel_run')", "Cancel"),
                Binding("r", "app.on_view('runs', 'resume_run')", "Resume"),
                Binding("g", "gallery", "Gallery")]  # footer hints while shown

    current: str | None = None  # the run shown (the newest until one is opened)
    log_gen = 0  # the watcher's generation for the current run's log lines
    drawn: Series | None = None  # the series on the plots, or the one waiting for a redraw
    drawn_fit: dict | None = None  # the current run's forecast, drawn over its step loss
    dirty = False

    def compose(self) -> ComposeResult:
        yield Static("No run selected: pick one in Runs (2) and press Enter.", id="run-title")
        yield RunPlots(id="plots")
        # wrapped: a long line (images/s, epoch time, a failed run's fix) shows whole
        yield ReflowLog(id="run-log", max_lines=2000, wrap=True, min_width=20)
        with Horizontal(id="log-find"):
            yield FindBox(placeholder="search the log (enter/up: above, down: below, esc "
                          "closes)", id="log-search")
            yield Static("", id="log-hits")

    def on_mount(self) -> None:
        self.query_one("#log-find").display = False
        self.set_interval(REDRAW_S, self.redraw)

    def find(self) -> bool:
        self.query_one("#log-find").display = True
        self.query_one("#log-search", FindBox).focus()
        return True

    def end_find(self) -> None:
        box = self.query_one("#log-find")
        if box.display:
            box.display = False
            self.query_one("#log-search", FindBox).value = ""
            self.query_one("#run-log", ReflowLog).end_find()
            self.query_one("#run-log", ReflowLog).focus()

    @on(Input.Changed, "#log-search")
    def searched(self, event: Input.Changed) -> None:
        event.stop()
        self.show_hits(self.query_one("#run-log", ReflowLog).find(event.value.strip()))

    @on(Input.Submitted, "#log-search")
    def older(self, event: Input.Submitted) -> None:
        event.stop()
        self.step(FindBox.Step(-1))

    @on(FindBox.Step)
    def step(self, event: FindBox.Step) -> None:
        log = self.query_one("#run-log", ReflowLog)
        self.show_hits(log.find(log.term, event.step))

    def show_hits(self, got: tuple[int, int]) -> None:
        at, count = got
        term = self.query_one("#run-log", ReflowLog).term
        self.query_one("#log-hits", Static).update(
            "" if not term else f" {at}/{count} lines" if count else " not found")

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        if self.current is None and snap.rows:  # the newest running run, else the newest
            self.select(next((r.key for r in snap.rows if r.state == "running"),
                             snap.rows[0].key))
        if snap.log_gen == self.log_gen and snap.log_lines:
            log = self.query_one("#run-log", ReflowLog)
            for line in snap.log_lines:
                log.add(Text(line))
        if snap.series is not None and snap.series.key == self.current \
                and snap.series is not self.drawn:
            self.drawn, self.dirty = snap.series, True
        r = snap.row(self.current)
        fit = dict(r.forecast) if r is not None and r.forecast else None
        if fit != self.drawn_fit:  # refitted at an epoch end: the curve moves
            self.drawn_fit, self.dirty = fit, True
        self.show_title()

    def select(self, key: str) -> None:
        if key == self.current:
            return
        self.current = key
        self.log_gen = self.app.watcher.select_run(key)
        self.end_find()
        self.query_one("#run-log", ReflowLog).reset()
        self.show_title()

    def show_title(self) -> None:
        r = self.snap.row(self.current)
        if r is not None:
            self.query_one("#run-title", Static).update(run_title(r))

    def redraw(self) -> None:
        # hidden (another tab): drawn when shown, the next tick after, as still dirty
        if self.dirty and self.drawn is not None and self.display:
            self.dirty = False
            r = self.snap.row(self.current)
            fit = ()
            if self.drawn_fit and r is not None and r.steps and self.drawn.step_x:
                # the fitted curve from the first logged step to the run's last step
                fit = fitted_points(self.drawn_fit, self.drawn.step_x[0], r.epochs * r.steps)
            self.query_one(RunPlots).show(self.drawn, fit)

    def selected_run(self) -> str | None:
        return self.current

    def export_job(self) -> Export | None:
        r = self.snap.row(self.current)
        if r is None:
            return super().export_job()
        return lambda reports: [plot_runs([(r.experiment, Path(r.key))],
                                          Path(r.key) / "curves.png", f"{r.experiment}/{r.run_id}")]

    def action_gallery(self) -> None:
        r = self.snap.row(self.app.active_view.selected_run() or self.current)
        if r is None:
            self.notify("pick a run with a checkpoint (Runs, 2) first")
            return
        self.app.push_screen(Gallery(r.key, f"{r.experiment}/{r.run_id}"))
