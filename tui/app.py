"""Rotunda's terminal app: list, launch, watch and compare runs from the keyboard.

A viewer and a launcher: it reads experiments.toml and runs/ (through the watcher, in a
worker thread) and starts `python -m engine` in detached processes. It never imports
torch. The app itself only routes: snapshots to the views in VIEWS, keys to the active
view, and the few keys that belong to no view (help, filter, export, reload).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, TabbedContent
from textual.worker import get_current_worker

from engine.core.errors import RotundaError
from engine.live import query
from engine.live.gpu import GpuMonitor
from engine.live.lab import Lab
from engine.live.snapshot import Snapshot
from engine.live.watcher import Watcher
from tui.notices import USER_ERRORS, error_line
from tui.screens import Help
from tui.views import VIEWS, RunsView, RunView, View
from tui.views.base import Export
from tui.widgets.gpu_bar import GpuBar

QUEUE_NOTICE_S = 2.0  # a run launched on a free slot leaves the queue within this
WAITING = {"gpu": "waiting for a free GPU slot", "cpu": "waiting for a free CPU slot"}


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class PollFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def view_bindings() -> list[Binding]:
    """Each view's number key and the keys it owns, which act on it from any view."""
    numbers = [Binding(v.KEY, f"view('{v.ID}')", v.LABEL or v.TAB, show=False) for v in VIEWS]
    nav = [Binding("tab", "cycle_view(1)", "Next view", priority=True, show=False),
           Binding("shift+tab", "cycle_view(-1)", "Previous view", priority=True, show=False),
           Binding("enter", "open", "Launch/open", show=False)]
    owned = [dataclasses.replace(b, action=f"on_view('{v.ID}', {b.action!r})")
             for v in VIEWS for b in v.KEYS]
    return numbers + nav + owned


class RotundaApp(App):
    TITLE = "Rotunda"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        *view_bindings(),
        Binding("e", "export", "Export"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("R", "reload", "Reload experiments.toml", show=False),
    ]

    def __init__(self, config_path: str | Path = "experiments.toml",
                 runs_dir: str | Path | None = None, gpu: bool = True,
                 poll_s: float = 1.0) -> None:
        super().__init__()
        self.config_path = Path(config_path)
        self.watcher = Watcher(Lab(config_path, runs_dir), GpuMonitor(enabled=gpu))
        self.poll_s = poll_s
        self.snapshot = Snapshot()  # the latest from the watcher
        self.poll_error: str | None = None  # the last one shown, so it is shown once
        self.following: tuple[str, float, bool] | None = None  # see follow()

    def compose(self) -> ComposeResult:
        yield Header()
        yield GpuBar("", id="gpu")
        with TabbedContent(initial=VIEWS[0].ID):
            for view in VIEWS:
                yield view()
        yield Input(placeholder="filter: words, #tag, acc>0.9, lr=0.1, model=resnet* "
                                "(all must hold; esc clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = str(self.config_path)
        self.query_one("#filter", Input).display = False
        self.watch_lab()

    _views: list = []  # the views and the GPU bar, found once (a query walks the DOM)
    _bars: list = []

    @property
    def views(self) -> list[View]:
        if not self._views or not self._views[0].is_attached:
            self._views = list(self.query(View))
        return self._views

    @property
    def active_view(self) -> View:
        return self.query_one(TabbedContent).active_pane

    # ------------------------------------------------------------------ snapshots
    @work(thread=True, exclusive=True, group="watch")
    def watch_lab(self) -> None:
        worker = get_current_worker()
        posted = None
        while not worker.is_cancelled:
            try:
                snap = self.watcher.poll()
                if posted is None or snap.news_since(posted):  # idle: no message at all
                    self.post_message(SnapshotReady(snap))
                    posted = snap
            except OSError as exc:  # a run folder removed mid-read: the next poll rereads
                self.log.warning(f"poll: {exc}")
            except RotundaError as exc:
                self.post_message(PollFailed(str(exc)))
            self.watcher.wait(self.poll_s)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        views = self.views
        if not views or self._exit or not self.is_running:
            return  # quitting (or a test's app shutting down): the widgets are going away
        before, snap = self.snapshot, message.snapshot
        self.snapshot, self.poll_error = snap, None
        for view in views:
            view.consume(snap)
        if not self._bars or not self._bars[0].is_attached:
            self._bars = list(self.query(GpuBar))  # none while quitting
        for bar in self._bars:
            bar.show(snap)
        if before.config_version and snap.config_version != before.config_version:
            self.notify(snap.config_error or "experiments.toml reloaded",
                        severity="error" if snap.config_error else "information")
        self.follow_launched(snap)

    def follow(self, key: str) -> None:
        """Select run `key` (just launched) in Runs and Run as soon as it appears."""
        self.following = (key, time.monotonic(), False)

    def follow_launched(self, snap: Snapshot) -> None:
        """Select the run followed once it appears; then, if it is still queued after
        QUEUE_NOTICE_S, say what it waits for (a run on a free slot starts at once)."""
        r = snap.row(self.following[0]) if self.following else None
        if r is None:
            return
        key, since, selected = self.following
        if not selected:
            self.query_one(RunsView).select(key)
            self.query_one(RunView).select(key)
            self.following = (key, since, True)
        if r.state != "queued":
            self.following = None
        elif r.waiting_for and time.monotonic() - since > QUEUE_NOTICE_S:
            self.notify(f"{r.experiment}/{r.run_id} is queued: "
                        + WAITING.get(r.waiting_for, f"waiting for {r.waiting_for}"))
            self.following = None

    def on_poll_failed(self, message: PollFailed) -> None:
        if message.error != self.poll_error:
            self.poll_error = message.error
            self.notify(message.error, severity="error", timeout=8)

    # ------------------------------------------------------------------ views
    def show_view(self, view_id: str) -> None:
        self.query_one(TabbedContent).active = view_id

    def focus_view(self, view: View) -> None:
        view.query_one(view.FOCUS).focus()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        box = self.query_one("#filter", Input)  # on the views it filters, while it filters
        box.display = event.pane.ID in self.FILTERED and (box.display or bool(box.value))
        if not (box.display and box.has_focus):  # / from another view brought us here
            self.focus_view(event.pane)

    def action_view(self, view_id: str) -> None:
        """A view by its number; 3 from Runs opens the run under the cursor."""
        if view_id == RunView.ID and self.active_view.ID == "runs":
            key = self.active_view.selected_run()
            if key:
                self.query_one(RunView).select(key)
        self.show_view(view_id)

    def action_cycle_view(self, step: int) -> None:
        if isinstance(self.screen, ModalScreen):
            self.screen.focus_next() if step > 0 else self.screen.focus_previous()
            return
        ids = [v.ID for v in VIEWS]
        self.show_view(ids[(ids.index(self.active_view.id) + step) % len(ids)])

    async def action_on_view(self, view_id: str, action: str) -> None:
        """A key a view owns: its action runs on that view, whichever is shown."""
        await self.run_action(action, self.query_one(f"#{view_id}", View))

    def action_open(self) -> None:
        self.active_view.open()

    # ------------------------------------------------------------------ app-wide keys
    def action_help(self) -> None:
        self.push_screen(Help(self.BINDINGS))

    def action_export(self) -> None:
        if self.snapshot.runs_dir is None:
            return  # before the first poll there is nothing to export
        config, job = self.snapshot.config, self.active_view.export_job()
        if job is None:  # a broken experiments.toml: say why rather than write empty files
            self.notify(self.snapshot.config_error or "nothing to export", severity="error")
            return
        reports = (config.root if config else self.config_path.parent) / "reports"
        self.export(job, reports)

    @work(thread=True, group="export")
    def export(self, job: Export, reports: Path) -> None:
        try:
            paths = job(reports)
        except USER_ERRORS as exc:
            self.call_from_thread(self.notify, error_line("export failed", exc),
                                  severity="error")
            return
        self.call_from_thread(self.notify, "exported: " + ", ".join(str(p) for p in paths),
                              timeout=10)

    FILTERED = ("experiments", "runs")  # the views the filter applies to, and shows on

    def action_filter(self) -> None:
        if self.active_view.find():  # the Run view searches its log
            return
        if self.active_view.ID not in self.FILTERED:
            self.show_view("experiments")
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        q = query.parse(event.value)
        if query.needs_settings(q):
            self.watcher.want_settings()  # rows carry settings from the next snapshot
        for view in self.views:
            view.set_filter(q)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        q, snap = query.parse(event.value), self.snapshot
        known = {k for r in snap.rows for k in query.run_fields(r)}
        if snap.config:
            known |= {k for g, exps in snap.config.groups().items() for e in exps
                      for k in query.experiment_fields(e, g, None)}
        unknown = q.unknown(known | {"base", "kind", "acc", "state", "run"})
        if unknown:
            self.notify(f"no run or experiment has {', '.join(unknown)}: nothing matches",
                        severity="warning")
        self.focus_view(self.active_view)

    def action_clear_filter(self) -> None:
        self.active_view.end_find()
        box = self.query_one("#filter", Input)
        if box.display or box.value:
            box.value = ""
            box.display = False
            self.focus_view(self.active_view)

    def action_reload(self) -> None:
        self.watcher.ask_reload()  # the next snapshot carries the file, and a notice

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if isinstance(b, Binding) and b.description and b.action != "quit":
                yield SystemCommand(b.description, f"key: {b.key_display or b.key}",
                                    lambda a=b.action: self.run_action(a))
