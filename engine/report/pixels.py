"""Images as terminal text: each character an upper-half block whose foreground is one
pixel and whose background the pixel below it, so two image rows make one text line.
Used by the gallery and the dataset card; numpy and rich only (no torch)."""
from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text


def half_blocks(a: np.ndarray) -> Text:
    """An HWC uint8 RGB image, already at the size to draw (one column per pixel); an odd
    last row is drawn over itself."""
    h, w = a.shape[:2]
    text = Text()
    for r in range(0, h, 2):
        for c in range(w):
            top, bottom = a[r, c], a[min(r + 1, h - 1), c]
            text.append("▀", style=f"rgb({top[0]},{top[1]},{top[2]}) on "
                                   f"rgb({bottom[0]},{bottom[1]},{bottom[2]})")
        text.append("\n")
    return text


def per_row(width: int, pixels: int = 16, gap: int = 2) -> int:
    """How many images `pixels` wide, `gap` columns apart, fit in `width` columns."""
    return max(1, (width + gap) // (pixels + gap))


def image_grid(cells: list, per_row: int) -> Table:
    """Cells (images drawn by half_blocks, with their captions) in rows of `per_row`."""
    grid = Table.grid(padding=(0, 2))
    for _ in range(per_row):
        grid.add_column()
    for i in range(0, len(cells), per_row):
        grid.add_row(*cells[i:i + per_row])
    return grid
