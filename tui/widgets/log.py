"""The Run view's log: a RichLog that keeps the lines it was given and wraps them at its
own width, again whenever that changes. A plain RichLog wraps a line once, when written,
at the console's measure or its minimum (20 columns while the Run view is hidden), for
good. `find` highlights a word in every line and moves to one of the lines that hold it."""
from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.binding import Binding
from textual.events import Resize
from textual.message import Message
from textual.widgets import Input, RichLog

HIT = "black on yellow"


class ReflowLog(RichLog):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source: deque[Text] = deque(maxlen=self.max_lines)
        self._wrapped_at = 0
        self.term = ""  # the word searched for, highlighted in every line
        self.hit: int | None = None  # the wrapped line of the match shown

    def add(self, text: Text) -> None:
        self.source.append(text)
        if self._wrapped_at:  # else hidden: written at the first width it gets
            self.write(self.shown(text), width=self._wrapped_at)

    def shown(self, text: Text) -> Text:
        if not self.term:
            return text
        text = text.copy()
        text.highlight_words([self.term], HIT, case_sensitive=False)
        return text

    def reset(self) -> None:
        self.source.clear()
        self.clear()
        self.hit = None

    def rewrite(self) -> None:
        self.clear()
        for text in self.source:
            self.write(self.shown(text), width=self._wrapped_at, scroll_end=False)

    def on_resize(self, event: Resize) -> None:
        super().on_resize(event)
        width = self.scrollable_content_region.width
        if width and width != self._wrapped_at:
            self._wrapped_at = width
            self.rewrite()
            if self.auto_scroll:
                self.scroll_end(animate=False)

    def hits(self) -> list[int]:
        """The wrapped lines that hold the word (a word cut by a wrap is not found)."""
        term = self.term.lower()
        return [y for y, strip in enumerate(self.lines) if term and term in strip.text.lower()]

    def find(self, term: str, step: int = 0) -> tuple[int, int]:
        """Search for `term` (a new one starts at the newest match); step -1 moves to the
        match above, +1 to the one below. Returns (the match shown, counted from the top,
        how many lines match); (0, 0) when none does."""
        if term != self.term:
            self.term, self.hit, step = term, None, 0
            self.auto_scroll = not term  # a search holds the view where it is
            if self._wrapped_at:
                self.rewrite()
        hits = self.hits()
        if not hits:
            self.hit = None
            return 0, 0
        i = len(hits) - 1 if self.hit not in hits else \
            min(max(hits.index(self.hit) + step, 0), len(hits) - 1)
        self.hit = hits[i]
        self.scroll_to(y=max(self.hit - self.scrollable_content_region.height // 2, 0),
                       animate=False)
        return i + 1, len(hits)

    def end_find(self) -> None:
        if self.term:
            self.find("")
            self.scroll_end(animate=False)


class FindBox(Input):
    """The log's search box: typing searches, Enter and up go to the match above, down
    to the one below (Esc, the app's, closes it)."""

    BINDINGS = [Binding("up", "step(-1)", "Match above", show=False),
                Binding("down", "step(1)", "Match below", show=False)]

    class Step(Message):
        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    def action_step(self, step: int) -> None:
        self.post_message(self.Step(step))
