from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class Pager(ModalScreen[None]):
    """Any text in a scrollable box (the gallery's images); esc closes it."""

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
    """Every key with a description, from the app's bindings."""

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
