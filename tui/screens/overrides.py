from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class AskOverrides(ModalScreen[str | None]):
    """Asks for KEY=VALUE overrides to launch an experiment with; None when cancelled.
    It stays open, listing every mistake, until `check` finds none."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, name: str, check: Callable[[str], list[str]]) -> None:
        super().__init__()
        self.exp_name, self.check = name, check

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Launch [b]{self.exp_name}[/b] with overrides "
                         "(KEY=VALUE separated by spaces, e.g. epochs=5 lr=0.05):")
            yield Input(placeholder="epochs=5 lr=0.05", id="overrides")
            yield Static("", id="override-errors")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        errors = self.check(event.value)
        if errors:
            self.query_one("#override-errors", Static).update(
                Text("\n".join(errors), style="red"))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
