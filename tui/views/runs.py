"""2 Runs: every run, newest first (s sorts by a column, G groups by a setting), live;
Enter opens one, c cancels, r resumes, t tags, n notes, space marks runs and d shows what
differs between two."""
from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from engine.core import rundir as rd
from engine.core.table import PCT, RATE, SECS, TEXT, fmt
from engine.launch import cancel
from engine.live.query import (
    ALIASES,
    Query,
    keep_run,
    needs_settings,
    parse,
    run_fields,
)
from engine.live.snapshot import RunRow, Snapshot
from engine.report.diff import diff_table
from engine.report.overview import notes_text
from engine.runs.detached import resume_detached
from tui.notices import in_background
from tui.screens import AskText, Confirm, Pager
from tui.views.base import View, restore_cursor, selected_key, state_text
from tui.views.run import RunView, epoch_text
from tui.widgets.table import Table

# `engine status`'s table, with the steps of the epoch under way folded into Epoch so that
# ETA fits at 80 columns
COLUMNS = (("State", TEXT), ("Experiment", TEXT), ("Run", TEXT), ("Epoch", TEXT),
           ("Best acc", PCT), ("img/s", RATE), ("Elapsed", SECS), ("ETA", SECS),
           ("Tags", TEXT))
DROP_FIRST = ("Tags", "img/s", "Elapsed", "Best acc")  # hidden in this order when narrow
# what each column sorts by: the figures, not their text
SORT_BY = {"State": lambda r: r.state, "Experiment": lambda r: r.experiment,
           "Run": lambda r: r.run_id, "Epoch": lambda r: r.epoch + (r.step or 0) / (r.steps or 1),
           "Best acc": lambda r: r.best_acc, "img/s": lambda r: r.images_per_s,
           "Elapsed": lambda r: r.elapsed, "ETA": lambda r: r.eta,
           "Tags": lambda r: notes_text(r.tags, r.note) or None}
SCROLLBAR = 2  # columns the vertical scrollbar takes
RESUMABLE = ("lost", "cancelled", "failed", "diverged")


MARK = "● "
GROUP = "group:"  # a group's row key
NONE = "(none)"


def group_value(r: RunRow, key: str) -> str:
    value = run_fields(r).get(key)
    if isinstance(value, tuple):
        value = " ".join(f"#{v}" for v in value)
    return NONE if value is None or value == "" else f"{value:g}" \
        if isinstance(value, float) else str(value)


def grouped(rows: list[RunRow], key: str) -> list[tuple[str | None, list[RunRow]]]:
    """(group value, its runs) in the order the groups first appear; one group with no
    head when `key` is empty."""
    if not key:
        return [(None, rows)]
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(group_value(r, key), []).append(r)
    return list(groups.items())


def group_cells(key: str, value: str, members: list[RunRow], folded: bool) -> list:
    """A group's row: folded or not, how many runs, the value, its best accuracy."""
    best = max((a for r in members if (a := run_fields(r)["acc"]) is not None), default=None)
    live = sum(r.state in rd.LIVE_STATES for r in members)
    head = Text(f"{'▸' if folded else '▾'} {len(members)}", style="bold")
    return [head, Text(f"{key}={value}", style="bold"), f"{live} live" if live else "",
            "", fmt(best, PCT), "", "", "", "-"]


def run_cells(r: RunRow, marked: bool = False) -> list:
    values = [r.experiment, r.run_id, epoch_text(r), r.best_acc, r.images_per_s,
              r.elapsed, r.eta, notes_text(r.tags, r.note, 24)]
    state = state_text(r.state)
    if marked:
        state = Text(MARK, style="bold magenta") + state
    if r.collapsed:
        state.append(" collapsed", style="bold red")
    if r.job:  # a batch system's own word: "PENDING (Resources)", "RUNNING on node01"
        state.append(f" {r.job}", style="dim")
    return [state, *(fmt(v, f) for v, (_, f) in zip(values, COLUMNS[1:]))]


def widths(cells: list) -> tuple[int, ...]:
    return tuple(cell_len(str(c)) for c in cells)


def widest(sizes: list[tuple[int, ...]]) -> dict[str, int]:
    """Each column's widest cell, from every row's cell widths."""
    most = [max(col, default=0) for col in zip(*sizes)] or [0] * len(COLUMNS)
    return {name: w for (name, _), w in zip(COLUMNS, most)}


def fitting_columns(most: dict[str, int], width: int, sorted_by: str | None = None) -> list[str]:
    """The columns to show in `width`, given each column's widest cell: every one if
    they fit, else without the least useful; names and run ids are never cut (the table
    scrolls instead)."""
    need = {name: max(len(name) + 2 * (name == sorted_by), most[name]) + 2  # sort arrow
            for name, _ in COLUMNS}
    shown = [name for name, _ in COLUMNS]
    if most["Tags"] <= 1:  # a Tags column only once a run has some ("-" is one wide)
        shown.remove("Tags")
    for name in DROP_FIRST:
        if name not in shown:
            continue
        if sum(need[n] for n in shown) <= width - SCROLLBAR:
            break
        shown.remove(name)
    return shown


class RunsView(View):
    ID, TAB, KEY, FOCUS = "runs", "Runs", "2", "#runs-table"
    KEYS = (Binding("c", "cancel_run", "Cancel run", show=False),
            Binding("r", "resume_run", "Resume run", show=False),
            Binding("space", "mark", "Mark a run (d diffs the last two, w overlays them all)",
                    show=False),
            Binding("w", "workspace", "Overlay the marked runs in the workspace", show=False),
            Binding("d", "diff", "Diff the two marked runs", show=False),
            Binding("t", "tag", "Tag the run (tags show in Runs and filter: #tag)",
                    show=False),
            Binding("n", "note", "A note on the run", show=False),
            Binding("G", "group", "Group runs by a setting (lr, model, task...)", show=False))
    # footer hints while shown (enter has priority over the table's own hidden binding,
    # which would hide it; it does what the table's does)
    BINDINGS = [Binding("enter", "open", "Open", priority=True),
                Binding("c", "cancel_run", "Cancel"), Binding("r", "resume_run", "Resume"),
                Binding("g", "app.on_view('run', 'gallery')", "Gallery"),
                Binding("space", "mark", "Mark", show=False),
                Binding("d", "diff", "Diff"), Binding("t", "tag", "Tag"),
                Binding("n", "note", "Note", show=False)]

    where = Query()  # the filter box's
    group_by = ""  # a setting or figure the runs are grouped by (G); "" none
    collapsed: frozenset = frozenset()  # the groups folded (Enter on a group's row)
    shown: dict = {}  # run key -> the cells on screen
    made: dict = {}  # run key -> (its RunRow, marked, its cells, their widths)
    columns: list = []  # the column names on screen
    filled_width = 0  # the view's width when the columns were last fitted
    marked: list = []  # run keys marked with space, oldest mark first

    def compose(self) -> ComposeResult:
        table = Table(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.names = [name for name, _ in COLUMNS]
        yield table

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        self.fill(snap.runs_changed)

    def set_filter(self, query: Query) -> None:
        self.where = query
        self.fill(True)

    @on(Table.Sorted, "#runs-table")
    def sorted(self) -> None:
        self.columns = []  # new labels
        self.fill(True)

    def fill(self, structure_changed: bool) -> None:
        """Refill when runs came, went, changed state or order; else update the live
        rows' cells."""
        table = self.query_one("#runs-table", Table)
        if not structure_changed and self.live_only(table):
            return
        rows = table.ordered([r for r in self.snap.rows if keep_run(self.where, r)],
                             lambda r, col: SORT_BY[col](r))
        cells, sizes, made, marked = {}, [], {}, set(self.marked)
        for head, members in grouped(rows, self.group_by):
            if head is not None:
                key = f"{GROUP}{head}"
                cells[key] = group_cells(self.group_by, head, members, key in self.collapsed)
                sizes.append(widths(cells[key]))
                if key in self.collapsed:
                    continue
            for r in members:  # a finished run's row is the same object poll after poll
                got = self.made.get(r.key)
                if got is None or got[0] is not r or got[1] != (r.key in marked):
                    row = run_cells(r, r.key in marked)
                    got = (r, r.key in marked, row, widths(row))
                made[r.key] = got
                cells[r.key] = got[2]
                sizes.append(got[3])
        self.made = made
        most = widest(sizes)
        # outer_size: a hidden view's size asks the compositor for a map of every widget
        self.filled_width = self.outer_size.width
        columns = fitting_columns(most, self.filled_width, table.sort_column)
        if structure_changed or columns != self.columns \
                or any(w > (table.known_widths or {}).get(n, 0) for n, w in most.items()) \
                or list(cells) != [k.value for k in table.rows]:  # wider: its column too
            table.known_widths = most
            self.refill(table, cells, columns)
            return
        for r in rows:
            if r.key not in cells:  # in a folded group
                continue
            if r.state in rd.LIVE_STATES:
                self.update_row(table, r.key, cells[r.key])

    def live_only(self, table: Table) -> bool:
        """Unfiltered, unsorted, ungrouped and no wider: only the rows that moved (live
        ones; a finished run's row is the same object poll after poll) are made again,
        without a pass over every run. False when the full fill is needed."""
        if self.where or self.group_by or table.sort_column is not None or not self.shown \
                or self.outer_size.width != self.filled_width:
            return False
        moved, marked = [], set(self.marked)
        for r in self.snap.rows:
            got = self.made.get(r.key)
            if got is not None and got[0] is r and got[1] == (r.key in marked):
                continue
            if got is None or r.key not in self.shown or r.state not in rd.LIVE_STATES:
                return False
            row = run_cells(r, r.key in marked)
            size = widths(row)
            if any(w > table.known_widths.get(name, 0) for (name, _), w in zip(COLUMNS, size)):
                return False  # wider than its column was made: the columns may change
            moved.append((r, row, size))
        for r, row, size in moved:
            self.made[r.key] = (r, r.key in marked, row, size)
            self.update_row(table, r.key, row)
        return True

    def update_row(self, table: DataTable, key: str, cells: list) -> None:
        """Only the cells whose text moved."""
        old = self.shown.get(key, ())
        for i, ((col, _), cell) in enumerate(zip(COLUMNS, cells)):
            if col in self.columns and (i >= len(old) or str(cell) != str(old[i])):
                table.update_cell(key, col, cell)
        self.shown[key] = cells

    def refill(self, table: DataTable, cells: dict, columns: list[str]) -> None:
        selected = selected_key(table)
        table.clear(columns=columns != self.columns)
        if not table.columns:
            for name in columns:
                table.add_column(table.label(name), key=name)
        self.shown, self.columns = cells, columns
        keep = [i for i, (name, _) in enumerate(COLUMNS) if name in columns]
        table.add_known_rows({key: [row[i] for i in keep] for key, row in cells.items()})
        restore_cursor(table, selected)

    def on_resize(self) -> None:
        self.fill(False)

    def select(self, key: str) -> None:
        """Put the cursor on run `key` (a run just launched)."""
        restore_cursor(self.query_one("#runs-table", DataTable), key)

    def selected_run(self) -> str | None:
        key = selected_key(self.query_one("#runs-table", DataTable))
        return None if key is None or key.startswith(GROUP) else key

    @on(DataTable.RowSelected, "#runs-table")
    def open(self) -> None:
        key = selected_key(self.query_one("#runs-table", DataTable))
        if key and key.startswith(GROUP):  # a group's row folds or unfolds it
            self.collapsed = self.collapsed ^ {key}
            self.fill(True)
            return
        if key:
            self.app.query_one(RunView).select(key)
            self.app.show_view(RunView.ID)

    def action_mark(self) -> None:
        key = self.selected_run()
        if key is None:
            return
        # a new list: the class attribute is shared until the first mark
        self.marked = [k for k in self.marked if k != key] if key in self.marked else \
            [*self.marked, key]
        self.fill(True)

    def action_workspace(self) -> None:
        """The marked runs (else the one under the cursor) into the workspace."""
        keys = [k for k in self.marked if self.snap.row(k)] or [self.selected_run()]
        if keys == [None]:
            self.notify("mark runs with space first (or put the cursor on one)")
            return
        self.app.query_one("#workspace").take(keys)
        self.app.show_view("workspace")

    def action_diff(self) -> None:
        pair = self.marked[-2:] if len(self.marked) >= 2 else (
            [*self.marked, self.selected_run()] if len(self.marked) == 1 else [])
        if len(pair) != 2 or None in pair or pair[0] == pair[1]:
            self.notify("mark two runs with space (or one, and put the cursor on the other), "
                        "then d")
            return
        in_background(self, "cannot compare these runs",
                      lambda: diff_table(Path(pair[0]), Path(pair[1])).to_rich(),
                      lambda table: self.app.push_screen(Pager(table)))

    def picked(self) -> RunRow | None:
        """The run c, t and n act on: the one under the cursor of the view shown."""
        r = self.snap.row(self.app.active_view.selected_run())
        if r is None:
            self.notify("select a run in Runs (2) or Run (3) first")
        return r

    def action_group(self) -> None:
        def got(text: str | None) -> None:
            if text is not None:
                self.group_by = ALIASES.get(text.strip().lower(), text.strip().lower())
                self.collapsed = frozenset()
                if self.group_by and needs_settings(parse(f"{self.group_by}=x")):
                    self.app.watcher.want_settings()  # rows carry settings from the next poll
                self.app.show_view(self.ID)
                self.fill(True)
        self.app.push_screen(AskText(
            "Group runs by a setting or figure (lr, model, task, batch_size, experiment, "
            "state, tags; empty: no groups). Enter on a group's row folds it:",
            placeholder="lr", value=self.group_by), got)

    def action_tag(self) -> None:
        r = self.picked()
        if r is None:
            return

        def check(text: str) -> list[str]:
            return [e for t in text.replace("#", " ").split() if (e := rd.tag_error(t))]

        def save(text: str | None) -> None:
            if text is not None:
                tags = tuple(text.replace("#", " ").split())
                self.write_notes(r, lambda: rd.write_notes(Path(r.key), add=tags,
                                                           remove=tuple(set(r.tags) - set(tags))))
        self.app.push_screen(AskText(
            f"Tags of [b]{r.experiment}/{r.run_id}[/b] (words separated by spaces; "
            "filter them with #tag):", check, "baseline lr-study", " ".join(r.tags)), save)

    def action_note(self) -> None:
        r = self.picked()
        if r is None:
            return

        def save(text: str | None) -> None:
            if text is not None:
                self.write_notes(r, lambda: rd.write_notes(Path(r.key), note=text))
        self.app.push_screen(AskText(
            f"Note on [b]{r.experiment}/{r.run_id}[/b] (empty clears it):",
            placeholder="what this run tried", value=r.note), save)

    def write_notes(self, r: RunRow, write) -> None:
        def written(_) -> None:
            self.app.watcher.rescan()  # a finished run's row is rebuilt at the next poll
        in_background(self, f"cannot write {r.experiment}/{r.run_id}'s notes", write, written)

    def action_cancel_run(self) -> None:
        r = self.picked()
        if r is None:
            return
        if r.state not in rd.LIVE_STATES:
            self.notify(f"{r.experiment}/{r.run_id} is {r.state}, not running")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                in_background(self, f"cannot cancel {r.experiment}/{r.run_id}",
                              lambda: cancel(Path(r.key)), self.notify)
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
        def resumed(_) -> None:
            self.app.watcher.rescan()  # its status changes from a finished state
            self.notify(f"resuming {r.experiment}/{r.run_id} from its last checkpoint")
        runs_dir = self.snap.runs_dir
        in_background(self, f"cannot resume {r.experiment}/{r.run_id}",
                      lambda: resume_detached(Path(r.key), runs_dir), resumed)
