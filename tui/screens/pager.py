from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class Pager(ModalScreen[None]):
    """Any text in a scrollable box; esc closes it."""

    BINDINGS = [("escape,q", "close", "Close")]

    def __init__(self, content) -> None:
        super().__init__()
        self.content = content

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(self.content, id="pager-text")

    def action_close(self) -> None:
        self.dismiss(None)


def help_text(bindings) -> Text:
    """Every described binding, one a line. Plain Text, not markup: key names such as
    `[` would otherwise be read as markup tags."""
    text = Text.assemble(("Rotunda keys", "bold"), "\n\n")
    keys = [(b.key_display or b.key, b.description)
            for b in bindings if isinstance(b, Binding) and b.description]
    for key, what in [*keys, ("arrows", "move in tables and lists"),
                      ("ctrl+p", "command palette: every action by name")]:
        text.append(f"  {key:<10}", style="bold")
        text.append(f" {what}\n")
    text.append("\nRuns are separate processes: quitting leaves them running, and the app "
                "re-attaches when started again.\n")
    text.append("esc closes this help", style="dim")
    return text


class Help(Pager):
    """Every key with a description, from the app's bindings."""

    BINDINGS = [("escape,q,question_mark", "close", "Close")]

    def __init__(self, bindings) -> None:
        super().__init__(help_text(bindings))
