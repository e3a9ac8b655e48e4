"""The app's tables: a DataTable whose Home and End jump to the first and last row (the
DataTable's own scroll sideways, hiding the name column)."""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class Table(DataTable):
    BINDINGS = [Binding("home", "scroll_top", "First row", show=False),
                Binding("end", "scroll_bottom", "Last row", show=False)]
