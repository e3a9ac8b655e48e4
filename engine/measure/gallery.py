"""Twenty test images with their true and predicted labels (seed 001, B8): in the terminal
as half-block pixels, and as one PNG grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Group
from rich.text import Text

from engine import tasks
from engine.core import rundir as rd
from engine.core.errors import RunError
from engine.core.settings import input_size, settings_from_dict
from engine.data.datasets import load_dataset, stratified_subset
from engine.data.splits import resize_u8
from engine.models.weights import normalizer
from engine.models.zoo import build_model
from engine.report.export import pyplot, save_figure
from engine.report.pixels import half_blocks, image_grid
from engine.train import checkpoint


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
    model = build_model(s.model, len(names), input_size(s), s.activation, s.dropout)
    model.load_state_dict(checkpoint.read(best)["model"])
    model.eval()
    norm, _ = normalizer(s, data, torch.device("cpu"))
    with torch.inference_mode():
        pred = model(norm(x)).argmax(1)
    return [(img.permute(1, 2, 0).numpy(), names[int(t)], names[int(p)])
            for img, t, p in zip(x, y, pred)]


def terminal_grid(items, pixels: int = 16, per_row: int = 5) -> Group:
    """Each image as `pixels` columns of half blocks (pixels.py): two image rows a line."""
    cells = []
    for img, true, pred in items:
        small = resize_u8(torch.from_numpy(img).permute(2, 0, 1)[None].contiguous(), pixels)
        text = half_blocks(small[0].permute(1, 2, 0).numpy())
        ok = true == pred
        text.append(f"{true[:pixels]}\n", style="bold")
        text.append(f"{'✓' if ok else '✗'} {pred[:pixels - 2]}", style="green" if ok else "red")
        cells.append(text)
    right = sum(t == p for _, t, p in items)
    return Group(image_grid(cells, per_row),
                 Text(f"{right}/{len(items)} correct (bold: true label; below: predicted)"))


def save_png(items, path: Path, title: str = "", per_row: int = 5) -> Path:

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

