from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class AskText(ModalScreen[str | None]):
    """Asks for one line of text (launch overrides, a run's tags or note); None when
    cancelled. It stays open, listing every mistake, until `check` finds none."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, check: Callable[[str], list[str]] = lambda _: [],
                 placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.prompt, self.check = prompt, check
        self.placeholder, self.value = placeholder, value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.prompt)
            yield Input(self.value, placeholder=self.placeholder, id="answer")
            yield Static("", id="ask-errors")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        errors = self.check(event.value)
        if errors:
            self.query_one("#ask-errors", Static).update(Text("\n".join(errors), style="red"))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
