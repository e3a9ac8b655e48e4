"""4 Compare: the TOML's comparison tables, sweeps and ablations; [ and ] switch, s sorts."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine.live.snapshot import CompareData, Snapshot
from engine.report.compare import table_names
from engine.report.document import write_report
from tui.views.base import Export, View
from tui.widgets.plots import TitledPlot, draw_compare
from tui.widgets.table import Table, cell_value


class CompareView(View):
    """Shows the comparison the watcher computed (it reads the runs, off the UI thread)
    once it is the one selected here."""

    ID, TAB, KEY, FOCUS = "compare", "Compare", "4", "#compare-table"
    KEYS = (Binding("left_square_bracket", "switch(-1)", "Previous comparison",
                    key_display="[", show=False),
            Binding("right_square_bracket", "switch(1)", "Next comparison",
                    key_display="]", show=False))
    BINDINGS = [Binding("left_square_bracket", "switch(-1)", "Prev", key_display="["),
                Binding("right_square_bracket", "switch(1)", "Next", key_display="]"),
                Binding("w", "workspace", "Workspace")]

    index = 0  # into table_names(config), modulo their number
    shown: CompareData | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-title")
        yield Table(id="compare-table", zebra_stripes=True, cursor_type="row")
        yield TitledPlot(id="compare-plot")
        yield Static("", id="compare-notes")

    def names(self) -> list[str]:
        return table_names(self.snap.config) if self.snap.config else []

    def selected(self) -> str | None:
        names = self.names()
        return names[self.index % len(names)] if names else None

    def show(self, snap: Snapshot, before: Snapshot) -> None:
        if snap.config_version != before.config_version:  # a reload starts at the first
            self.index = 0
            self.app.watcher.select_compare(self.selected())
            if not self.names():
                self.show_none()
        data = snap.compare
        if data is not None and data is not self.shown and data.name == self.selected():
            self.show_table(data)

    def action_switch(self, step: int) -> None:
        self.index += step
        self.app.show_view(self.ID)
        self.app.watcher.select_compare(self.selected())

    def show_none(self) -> None:
        self.shown = None
        self.query_one("#compare-table", DataTable).clear(columns=True)
        self.query_one("#compare-plot", TitledPlot).display = False
        self.query_one("#compare-title", Static).update("")
        self.query_one("#compare-notes", Static).update(Text(
            "No comparisons: add a [compare.NAME] table to experiments.toml."
            if self.snap.config else f"No comparisons: {self.snap.config_error}",
            style="" if self.snap.config else "red"))

    def show_table(self, data: CompareData) -> None:
        self.shown = data
        names = self.names()
        self.query_one("#compare-title", Static).update(Text.assemble(
            (data.title, "bold"), f"  ({data.name}, {names.index(data.name) + 1}/{len(names)}; "
            "[ and ] switch, e writes its report)"))
        table = self.query_one("#compare-table", Table)
        table.clear(columns=True)
        table.names = data.columns
        if table.sort_column not in data.columns:
            table.sort_column = None
        for col in data.columns:
            table.add_column(table.label(col), key=col)
        for row in table.ordered(list(data.rows), lambda row, col: cell_value(
                row[data.columns.index(col)])):
            table.add_row(*row)
        # a row's footnote (¹ not at the declared settings) first: it says what a figure
        # is, and a short terminal cuts the last lines
        notes = sorted(data.notes, key=lambda n: not n[:1] in "¹²³⁴⁵⁶⁷⁸⁹")
        self.query_one("#compare-notes", Static).update(Text("\n".join(notes), style="dim"))
        draw_compare(self.query_one("#compare-plot", TitledPlot), data)

    def action_workspace(self) -> None:
        """The comparison's runs into the workspace, to overlay and inspect."""
        keys = [r[1] for r in (self.shown.runs if self.shown else ())]
        if not keys:
            self.notify("this comparison has no runs yet")
            return
        self.app.query_one("#workspace").take(keys)
        self.app.show_view("workspace")

    @on(Table.Sorted, "#compare-table")
    def resort(self) -> None:
        if self.shown is not None:
            self.show_table(self.shown)

    def export_job(self) -> Export | None:
        name, config, runs_dir = self.selected(), self.snap.config, self.snap.runs_dir
        if not name:
            return super().export_job()
        return lambda reports: write_report(config, [name], runs_dir, reports)[:1]
