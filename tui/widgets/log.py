"""The Run view's log: a RichLog that keeps the lines it was given and wraps them at its
own width, again whenever that changes. A plain RichLog wraps a line once, when written,
at the console's measure or its minimum (20 columns while the Run view is hidden), for
good."""
from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog


class ReflowLog(RichLog):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source: deque[Text] = deque(maxlen=self.max_lines)
        self._wrapped_at = 0

    def add(self, text: Text) -> None:
        self.source.append(text)
        if self._wrapped_at:  # else hidden: written at the first width it gets
            self.write(text, width=self._wrapped_at)

    def reset(self) -> None:
        self.source.clear()
        self.clear()

    def on_resize(self, event: Resize) -> None:
        super().on_resize(event)
        width = self.scrollable_content_region.width
        if width and width != self._wrapped_at:
            self._wrapped_at = width
            self.clear()
            for text in self.source:
                self.write(text, width=width)
