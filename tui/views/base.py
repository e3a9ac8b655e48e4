"""What every view is: a tab that renders snapshots. A new view is a subclass of View in
its own module plus one line in VIEWS (views/__init__.py); the app takes its tab, number
key, keys, focus and snapshots from there."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, TabPane
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from engine import launch
from engine.live.query import Query
from engine.live.snapshot import Snapshot
from engine.report.export import export_table
from engine.report.overview import runs_table

STATE_STYLE = {"done": "green", "running": "bold yellow", "queued": "cyan", "failed": "red",
               "diverged": "magenta", "cancelled": "dim", "lost": "bold red",
               "damaged": "bold red reverse"}

Export = Callable[[Path], list[Path]]  # reports folder -> the files written


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def selected_key(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except CellDoesNotExist:
        return None


def restore_cursor(table: DataTable, key: str | None) -> None:
    """Put the cursor back on the row with `key` after a refill, if it is still there."""
    if key is None:
        return
    try:
        table.move_cursor(row=table.get_row_index(key), animate=False)
    except RowDoesNotExist:
        pass


class View(TabPane):
    ID: ClassVar[str]
    TAB: ClassVar[str]  # the tab's title, after its number key
    KEY: ClassVar[str]  # the key that shows it
    LABEL: ClassVar[str] = ""  # what help and the command palette call it; default TAB
    FOCUS: ClassVar[str]  # the widget that takes focus when the view is shown
    # Keys that work from every view and run an action of this one (they go into the
    # app's BINDINGS, so help, the footer and the command palette list them).
    KEYS: ClassVar[tuple[Binding, ...]] = ()

    snap = Snapshot()  # the latest snapshot shown
    _focus = None  # the FOCUS widget, once found

    def __init__(self) -> None:
        super().__init__(f"{self.KEY} {self.TAB}", id=self.ID)

    def consume(self, snap: Snapshot) -> None:
        """The app calls this with every snapshot (not once the view's widgets are gone:
        a snapshot can arrive while the app is shutting down)."""
        focus = self._focus
        if focus is None or not focus.is_attached:  # a query walks the view's widgets
            found = self.query(self.FOCUS)
            if not found:
                return
            self._focus = found.first()
        before, self.snap = self.snap, snap
        self.show(snap, before)

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        """Render `snap`; `before` is the one shown last, to tell what changed."""

    def set_filter(self, query: Query) -> None:
        """The filter box changed (views without a list ignore it)."""

    def find(self) -> bool:
        """/ on this view: True if it searches something of its own (the Run view, its
        log), else the app's filter box opens."""
        return False

    def end_find(self) -> None:
        """Esc: close the view's own search."""

    def open(self) -> None:
        """Enter: launch or open what is selected."""

    def selected_run(self) -> str | None:
        """The run that c, r and g act on while this view is shown."""
        return None

    def export_job(self) -> Export | None:
        """What e writes from this view, decided now and written in a worker thread:
        by default the runs table; None without a usable experiments file."""
        runs_dir = self.snap.runs_dir
        if self.snap.config is None:
            return None
        return lambda reports: export_table(runs_table(launch.list_runs(runs_dir)), reports, "runs")
