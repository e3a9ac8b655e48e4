"""The app's tables: a DataTable whose Home and End jump to the first and last row (the
DataTable's own scroll sideways, hiding the name column), sorted by any column: `s` picks
the next column, `S` reverses, a click on a header sorts by it (again: reversed). The view
that fills the table orders its rows with `ordered` and labels columns with `label`, so
the order holds through every refill."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets._data_table import DuplicateKey, Row, RowKey

# a figure, or a state word then a figure ("done 78.0%"); "resnet20" is text
FIGURE = re.compile(r"(?:[a-z]+ )?([-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?)", re.IGNORECASE)
DURATION = re.compile(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")


def cell_value(cell) -> float | str | None:
    """How a formatted cell sorts: "-" and "" last, "12.5%" and "done 78.0%" by their
    number, "1h 2m" and "35s" by seconds, other text by itself."""
    text = str(cell.plain if isinstance(cell, Text) else cell).strip()
    if text in ("", "-", "—"):
        return None
    m = DURATION.fullmatch(text)
    if m and any(m.groups()):
        h, mi, s = (int(g or 0) for g in m.groups())
        return float(3600 * h + 60 * mi + s)
    m = FIGURE.match(text)
    if m:
        try:
            return float(m.group(1).replace(",", ""))
        except ValueError:
            pass
    return text.lower()


def sort_key(value) -> tuple:
    """Numbers before text, None last, whichever way the column is sorted (see ordered)."""
    if value is None:
        return (2, 0)
    if isinstance(value, (tuple, list)):
        value = " ".join(map(str, value))
    return (0, value) if isinstance(value, (int, float)) else (1, str(value).lower())


class Table(DataTable):
    BINDINGS = [Binding("home", "scroll_top", "First row", show=False),
                Binding("end", "scroll_bottom", "Last row", show=False),
                Binding("s", "sort_next", "Sort by the next column", show=False),
                Binding("S", "sort_reverse", "Reverse the sort", show=False)]

    sort_column: str | None = None  # None: the view's own order
    sort_reverse = False
    names: Sequence[str] = ()  # the columns that can be sorted by, in order

    class Sorted(Message):
        """The sort changed: the view refills."""

        def __init__(self, table: "Table") -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> "Table":
            return self.table

    def label(self, name: str) -> str:
        if name != self.sort_column:
            return name
        return f"{name} {'▼' if self.sort_reverse else '▲'}"

    def ordered(self, items: list, value_of: Callable[[object, str], object]) -> list:
        """`items` in the table's sort order: by value_of(item, column), missing values
        last both ways; the view's own order when unsorted (and among ties)."""
        if self.sort_column is None:
            return list(items)
        col = self.sort_column
        keyed = [(sort_key(value_of(it, col)), i, it) for i, it in enumerate(items)]
        present = sorted((k for k in keyed if k[0][0] != 2), key=lambda k: k[0],
                         reverse=self.sort_reverse)
        return [it for _, _, it in present] + [it for k, _, it in keyed if k[0] == 2]

    def set_sort(self, column: str | None, reverse: bool = False) -> None:
        self.sort_column, self.sort_reverse = column, reverse
        # after the refresh: a table refilled while it handles a header click renders
        # its columns at their labels' widths (textual 8.2.8)
        self.call_after_refresh(self.post_message, self.Sorted(self))

    def action_sort_next(self) -> None:
        names = list(self.names)
        if not names:
            return
        i = names.index(self.sort_column) + 1 if self.sort_column in names else 0
        self.set_sort(names[i] if i < len(names) else None)

    def action_sort_reverse(self) -> None:
        if self.sort_column is None and self.names:
            self.set_sort(self.names[0], True)
        else:
            self.set_sort(self.sort_column, not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        name = str(event.column_key.value)
        if name not in self.names:
            return
        self.set_sort(name, not self.sort_reverse if name == self.sort_column else False)

    # A view that knows its cells' widths (column key -> cells) hands them over before a
    # refill; DataTable would otherwise measure every cell of every new row, which is most
    # of the time 10,000 runs take to show (textual 8.2, pinned in pyproject.toml).
    known_widths: dict | None = None

    def _update_dimensions(self, new_rows) -> None:
        known = self.known_widths
        if known is None:
            super()._update_dimensions(new_rows)
            return
        for column in self.columns.values():
            column.content_width = max(cell_len(column.label.plain),
                                       known.get(column.key.value, 0))
        self.virtual_size = Size(
            sum(c.get_render_width(self) for c in self.columns.values())
            + self._row_label_column_width,
            self._total_row_height + (self.header_height if self.show_header else 0))

    def add_known_rows(self, rows: dict) -> None:
        """add_row for many rows (row key -> cells, one per column) at once: add_row's own
        work for each, its cursor update and idle check once (a fifth of 10,000 runs'
        refill)."""
        keys = [c.key for c in self.ordered_columns]
        start = self.row_count
        for i, (key, cells) in enumerate(rows.items()):
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = start + i
            self._data[row_key] = dict(zip(keys, cells))
            self.rows[row_key] = Row(row_key, 1)
            self._new_rows.add(row_key)
        if not rows:
            return
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if start == 0 and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()
