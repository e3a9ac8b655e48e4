from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class AskOverrides(ModalScreen[str | None]):
    """Asks for KEY=VALUE overrides to launch an experiment with; None when cancelled."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.exp_name = name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Launch [b]{self.exp_name}[/b] with overrides "
                         "(KEY=VALUE separated by spaces, e.g. epochs=5 lr=0.05):")
            yield Input(placeholder="epochs=5 lr=0.05", id="overrides")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
