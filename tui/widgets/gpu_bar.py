from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.live.snapshot import Snapshot

SPARK = " ▁▂▃▄▅▆▇█"


class GpuBar(Static):
    """One line: each GPU's memory (with a sparkline of its history) and utilisation, or
    why there is no GPU to show."""

    shown: object = None  # what is on screen: the same again costs no layout

    def show(self, snap: Snapshot) -> None:
        if snap.gpus is None:
            if self.shown != snap.gpu_error:
                self.shown = snap.gpu_error
                self.update(Text(f"GPU: {snap.gpu_error}; runs use the CPU", style="dim"))
            return
        if self.shown == snap.gpus:
            return
        self.shown = snap.gpus
        parts = []
        for g in snap.gpus:
            spark = "".join(SPARK[min(8, int(v * 8.999))] for v in g.history)
            parts.append(f"GPU{g.index} {g.name}: {g.used_mb / 1024:.1f}/"
                         f"{g.total_mb / 1024:.1f} GiB {spark} util "
                         f"{'n/a' if g.util is None else f'{g.util}%'}")
        self.update("  |  ".join(parts))
