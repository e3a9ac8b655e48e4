"""Twenty test images with their true and predicted labels (seed 001, B8): in the terminal
as half-block pixels, and as one PNG grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Group
from rich.table import Table
from rich.text import Text

from . import checkpoint, tasks
from . import rundir as rd
from .data import load_dataset, stratified_subset
from .errors import RunError
from .models import build_model
from .settings import settings_from_dict
from .splits import Normalizer, resize_u8


def predict_gallery(run_dir: Path, n: int = 20) -> list[tuple[np.ndarray, str, str]]:
    """(image HWC uint8, true label, predicted label) for n test images, two per class
    where possible, scored by the run's best checkpoint on the CPU."""
    meta = rd.read_config(run_dir)
    if not meta.get("settings"):
        raise RunError(f"{run_dir} has no readable {rd.CONFIG}")
    best = Path(run_dir) / rd.CHECKPOINTS / "best.pt"
    if not best.exists():
        raise RunError(f"{run_dir} has no best checkpoint yet (it has finished no epoch)")
    s = settings_from_dict(meta["settings"], str(Path(run_dir) / rd.CONFIG))
    data = load_dataset(s)
    labels = data.test.labels()
    idx = stratified_subset(labels, n)
    x, y = next(data.test.subset(idx).batches(len(idx), torch.device("cpu")))
    x, y, names = tasks.build(s).sample(x, y, data.classes)
    model = build_model(s.model, len(names), s.image_size, s.activation, s.dropout)
    model.load_state_dict(checkpoint.read(best)["model"])
    model.eval()
    with torch.inference_mode():
        pred = model(Normalizer(data.mean, data.std, "cpu", False)(x)).argmax(1)
    return [(img.permute(1, 2, 0).numpy(), names[int(t)], names[int(p)])
            for img, t, p in zip(x, y, pred)]


def terminal_grid(items, pixels: int = 16, per_row: int = 5) -> Group:
    """Each image as `pixels` columns of upper-half blocks: two image rows per text line."""
    grid = Table.grid(padding=(0, 2))
    for _ in range(per_row):
        grid.add_column()
    cells = []
    for img, true, pred in items:
        small = resize_u8(torch.from_numpy(img).permute(2, 0, 1)[None].contiguous(), pixels)
        a = small[0].permute(1, 2, 0).numpy()
        text = Text()
        for r in range(0, pixels, 2):
            for c in range(pixels):
                top, bottom = a[r, c], a[min(r + 1, pixels - 1), c]
                text.append("▀", style=f"rgb({top[0]},{top[1]},{top[2]}) on "
                                       f"rgb({bottom[0]},{bottom[1]},{bottom[2]})")
            text.append("\n")
        ok = true == pred
        text.append(f"{true[:pixels]}\n", style="bold")
        text.append(f"{'✓' if ok else '✗'} {pred[:pixels - 2]}", style="green" if ok else "red")
        cells.append(text)
    for i in range(0, len(cells), per_row):
        grid.add_row(*cells[i:i + per_row])
    right = sum(t == p for _, t, p in items)
    return Group(grid, Text(f"{right}/{len(items)} correct (bold: true label; below: "
                            "predicted)"))


def save_png(items, path: Path, title: str = "", per_row: int = 5) -> Path:
    from .export import pyplot, save_figure

    plt = pyplot()
    rows = -(-len(items) // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(2.2 * per_row, 2.5 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, true, pred) in zip(axes.flat, items):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"true: {true}\npred: {pred}", fontsize=8,
                     color="green" if true == pred else "red")
    return save_figure(fig, path, title)

