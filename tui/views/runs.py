"""2 Runs: every run, newest first, live; Enter opens one, c cancels, r resumes."""
from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from engine import rundir as rd
from engine.analysis import fmt, runs_table
from engine.launch import cancel, resume_detached

from ..notices import reported
from ..screens import Confirm
from ..snapshot import RunRow, Snapshot
from .base import View, matches, restore_cursor, selected_key, state_text
from .run import RunView

COLUMNS = runs_table([]).columns  # (name, format): the same table as `engine status`
RESUMABLE = ("lost", "cancelled", "failed", "diverged")


def run_cells(r: RunRow) -> list:
    step = f"{r.step}/{r.steps}" if r.step is not None and r.steps else None
    values = [r.experiment, r.run_id, f"{r.epoch}/{r.epochs}", step, r.best_acc,
              r.images_per_s, r.elapsed, r.eta]
    return [state_text(r.state), *(fmt(v, f) for v, (_, f) in zip(values, COLUMNS[1:]))]


class RunsView(View):
    ID, TAB, KEY, FOCUS = "runs", "Runs", "2", "#runs-table"
    KEYS = (Binding("c", "cancel_run", "Cancel run"),
            Binding("r", "resume_run", "Resume run", show=False))

    filter_text = ""
    shown: dict = {}  # run key -> the cells on screen

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for name, _ in COLUMNS:
            table.add_column(name, key=name)

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        self.fill(snap.runs_changed)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.fill(True)

    def fill(self, structure_changed: bool) -> None:
        """Refill when runs came, went or changed state; else update the live rows' cells."""
        table = self.query_one("#runs-table", DataTable)
        rows = [r for r in self.snap.rows if matches(self.filter_text, r.experiment, r.run_id,
                                                      r.state)]
        if structure_changed or [r.key for r in rows] != [k.value for k in table.rows]:
            selected = selected_key(table)
            table.clear()
            self.shown = {r.key: run_cells(r) for r in rows}
            for r in rows:
                table.add_row(*self.shown[r.key], key=r.key)
            restore_cursor(table, selected)
            return
        for r in rows:
            if r.state in rd.LIVE_STATES:  # only the cells whose text moved
                cells, old = run_cells(r), self.shown.get(r.key, ())
                for i, ((col, _), cell) in enumerate(zip(COLUMNS, cells)):
                    if i >= len(old) or str(cell) != str(old[i]):
                        table.update_cell(r.key, col, cell)
                self.shown[r.key] = cells

    def selected_run(self) -> str | None:
        return selected_key(self.query_one("#runs-table", DataTable))

    @on(DataTable.RowSelected, "#runs-table")
    def open(self) -> None:
        key = self.selected_run()
        if key:
            self.app.query_one(RunView).select(key)
            self.app.show_view(RunView.ID)

    def action_cancel_run(self) -> None:
        r = self.snap.row(self.app.active_view.selected_run())
        if r is None:
            self.notify("select a run in Runs (2) or Run (3) first")
            return
        if r.state not in rd.LIVE_STATES:
            self.notify(f"{r.experiment}/{r.run_id} is {r.state}, not running")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                with reported(self, f"cannot cancel {r.experiment}/{r.run_id}"):
                    self.notify(cancel(Path(r.key)))
        self.app.push_screen(Confirm(
            f"Cancel [b]{r.experiment}/{r.run_id}[/b] ({r.state}, epoch {r.epoch}/{r.epochs})?"
            "\nIts last checkpoint stays and it can be resumed later (r)."), answered)

    def action_resume_run(self) -> None:
        r = self.snap.row(self.app.active_view.selected_run())
        if r is None:
            return
        if r.state not in RESUMABLE:
            self.notify(f"{r.experiment}/{r.run_id} is {r.state}: nothing to resume")
            return
        with reported(self, f"cannot resume {r.experiment}/{r.run_id}"):
            resume_detached(Path(r.key), self.snap.runs_dir)
            self.app.watcher.rescan()  # its status changes from a finished state
            self.notify(f"resuming {r.experiment}/{r.run_id} from its last checkpoint")
