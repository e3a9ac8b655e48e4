"""The table vocabulary every report and command shares: Table (rendered as text, rich,
Markdown or CSV), column formats and durations. No torch."""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table as RichTable

from engine.core import rundir as rd
from engine.core.provenance import PROVENANCE, describe_code

# Column formats: how a raw cell value is shown (CSV keeps the raw value).
PCT, DPCT, INT, SECS, RATE, TEXT = "pct", "dpct", "int", "secs", "rate", "text"
METRIC_NAMES = {"test_acc_at_best": "acc@best", "final_test_acc": "final acc",
                "best_test_acc": "best acc"}


@dataclass
class Table:
    title: str
    columns: list  # [(name, format)]
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    whole: set = field(default_factory=set)  # columns never cut: names and ids to paste
    # a curve that is not accuracy: (x axis, {line: [(x, y), ...]}, y label)
    plot: tuple | None = None
    runs: list = field(default_factory=list)  # per row, the run directories behind it
    # row index -> its footnote's text: CSV has no notes, so it gets a "Note" column
    row_notes: dict = field(default_factory=dict)

    def traced(self) -> "Table":
        """A copy with each row's run ids and code commits, for exports: a figure in a
        report traces back to its runs."""
        if len(self.runs) != len(self.rows):
            return self
        extra = []
        for paths in self.runs:
            prov = [rd.read_json(Path(p) / PROVENANCE) or {} for p in paths]
            extra.append([" ".join(Path(p).name for p in paths) or None,
                          " ".join(dict.fromkeys(describe_code(x.get("code") or {})
                                                 for x in prov)) or None])
        return dataclasses.replace(self, columns=self.columns + [("Run id", TEXT),
                                                                 ("Commit", TEXT)],
                                   rows=[row + more for row, more in zip(self.rows, extra)])

    def formatted(self) -> list[list[str]]:
        return [[fmt(v, f) for v, (_, f) in zip(row, self.columns)] for row in self.rows]

    def to_markdown(self) -> str:
        head = [n for n, _ in self.columns]
        align = ["---" if f == TEXT else "---:" for _, f in self.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(head) + " |",
                 "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in self.formatted()]
        lines += [""] + [f"_{n}_" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        notes = self.row_notes
        w.writerow([n for n, _ in self.columns] + (["Note"] if notes else []))
        for i, row in enumerate(self.rows):
            w.writerow(["" if v is None else (round(v, 6) if isinstance(v, float) else v)
                        for v in row] + ([notes.get(i, "")] if notes else []))
        return buf.getvalue()

    def to_text(self) -> str:
        """Plain aligned columns with nothing cut, for pipes and files."""
        cells = [[n for n, _ in self.columns]] + self.formatted()
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = [self.title] + ["  ".join(c.ljust(w) if f == TEXT else c.rjust(w)
                                          for c, w, (_, f) in zip(row, widths, self.columns))
                                .rstrip() for row in cells]
        return "\n".join(lines + self.notes) + "\n"

    def to_rich(self):
        t = RichTable(title=self.title, title_justify="left", caption="\n".join(self.notes),
                      caption_justify="left")
        rows = self.formatted()
        for i, (name, f) in enumerate(self.columns):
            whole = max([len(name)] + [len(r[i]) for r in rows]) if name in self.whole else None
            t.add_column(name, justify="left" if f == TEXT else "right",
                         no_wrap=whole is not None, min_width=whole)
        for row in rows:
            t.add_row(*row)
        return t


def fmt(v, f: str) -> str:
    if v is None or v == "":
        return "-"
    if f == PCT:
        return f"{100 * v:.2f}%"
    if f == DPCT:
        return f"{100 * v:+.2f}"
    if f == INT:
        return f"{int(v):,}"
    if f == SECS:
        return duration(v)
    if f == RATE:
        return f"{v:,.0f}"
    return str(v)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
