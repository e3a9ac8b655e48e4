"""Datasets by setting: which source, which subset. Splits are uint8 tensors (splits.py)
read by sources.py or drawn here (the synthetic glyphs); crop, flip, rotation and
normalisation happen later, as batched tensor ops on the device."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from engine.core.errors import DataError
from engine.core.settings import Settings
from engine.data.sources import (
    CIFAR10_CLASSES,
    load_cifar10,
    load_hdf5,
    load_imagefolder,
)
from engine.data.splits import Dataset, TensorSplit, channel_stats


def load_dataset(s: Settings) -> Dataset:
    if s.dataset == "synthetic":
        data = synthetic(s.synthetic_train, s.synthetic_test, s.image_size)
    elif s.dataset == "cifar10":
        data = load_cifar10(Path(s.data_dir), s.download, s.image_size)
    elif s.dataset == "hdf5":
        data = load_hdf5(Path(s.data_dir), s.image_size)
    else:
        data = load_imagefolder(Path(s.data_dir), s.image_size)
    if s.limit_train:
        data.train = data.train.subset(stratified_subset(data.train.labels(), s.limit_train))
    if s.train_val_split:
        data.train, data.val = hold_out(data.train, s.train_val_split)
    if s.per_class_train:
        data.train = data.train.subset(per_class_subset(data.train.labels(), s.per_class_train))
    if s.label_fraction < 1:
        n = max(len(data.classes), round(s.label_fraction * len(data.train)))
        data.train = data.train.subset(stratified_subset(data.train.labels(), n))
    if s.limit_test:
        data.test = data.test.subset(stratified_subset(data.test.labels(), s.limit_test))
    return data


def hold_out(train, share: float):
    """(train, validation): `share` of the train split, stratified by class and chosen by
    a fixed seed (the same validation images for every run of the dataset), held out."""
    labels = train.labels()
    if labels is None:
        raise DataError("train_val_split needs a labelled train split")
    n = max(1, round(share * len(labels)))
    if n >= len(labels):
        raise DataError(f"train_val_split = {share} leaves no training images of "
                        f"{len(labels)}")
    val = stratified_subset(labels, n, seed=1)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return train.subset(keep.nonzero().flatten()), train.subset(val)


def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """`n` indices with each class in its original proportion (largest remainders get the
    extra places), chosen by a fixed seed: the same subset for every run and run order."""
    labels = labels.cpu()
    total = len(labels)
    if n >= total:
        return torch.arange(total)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    remainder = n - int(quota.sum())
    order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[order[:remainder]] += 1
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=gen)
    shuffled = labels[perm]
    picked = [perm[shuffled == c][: int(q)] for c, q in zip(classes.tolist(), quota)]
    return torch.sort(torch.cat(picked)).values


def per_class_subset(labels: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """The first k images of each class in a fixed shuffled order: the same for every run,
    and nested (the 20 per class are among the 100 per class)."""
    labels = labels.cpu()
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = [perm[labels[perm] == c][:k] for c in torch.unique(labels).tolist()]
    return torch.sort(torch.cat(picked)).values


# --------------------------------------------------------------------------- synthetic
# Ten glyphs, none symmetric under a quarter turn and none whose mirror image is a half
# turn of itself, so that both the class and the rotation stay learnable with flips.
_GLYPHS = {
    "ell": [(-.6, -.8), (-.2, -.8), (-.2, .4), (.6, .4), (.6, .8), (-.6, .8)],
    "eff": [(-.6, -.8), (.6, -.8), (.6, -.45), (-.2, -.45), (-.2, -.1), (.4, -.1), (.4, .25),
            (-.2, .25), (-.2, .8), (-.6, .8)],
    "tee": [(-.7, -.8), (.7, -.8), (.7, -.4), (.2, -.4), (.2, .8), (-.2, .8), (-.2, -.4),
            (-.7, -.4)],
    "cup": [(-.7, -.8), (-.3, -.8), (-.3, .4), (.3, .4), (.3, -.8), (.7, -.8), (.7, .8),
            (-.7, .8)],
    "wye": [(-.75, -.8), (-.3, -.8), (0, -.25), (.3, -.8), (.75, -.8), (.2, .05), (.2, .8),
            (-.2, .8), (-.2, .05)],
    "arrow": [(0, -.85), (.7, -.1), (.25, -.1), (.25, .85), (-.25, .85), (-.25, -.1),
              (-.7, -.1)],
    "triangle": [(0, -.8), (.75, .75), (-.75, .75)],
    "house": [(0, -.85), (.75, -.2), (.75, .8), (-.75, .8), (-.75, -.2)],
    "dagger": [(-.15, -.85), (.15, -.85), (.15, -.5), (.6, -.5), (.6, -.2), (.15, -.2),
               (.15, .85), (-.15, .85), (-.15, -.2), (-.6, -.2), (-.6, -.5), (-.15, -.5)],
    "dome": [(.8 * math.cos(t), .35 + .8 * math.sin(t))
             for t in np.linspace(math.pi, 2 * math.pi, 17)] + [(.8, .75), (-.8, .75)],
}


def synthetic(n_train: int, n_test: int, size: int = 32) -> Dataset:
    """Coloured glyphs on noisy backgrounds, upright with a little jitter. Fixed seeds:
    every run sees the same images, whatever its own seed."""
    train_x, train_y = _render_glyphs(n_train, size, seed=1234)
    test_x, test_y = _render_glyphs(n_test, size, seed=5678)
    mean, std = channel_stats(train_x)
    return Dataset(TensorSplit(train_x, train_y), TensorSplit(test_x, test_y), tuple(_GLYPHS),
                   mean, std, f"synthetic glyphs ({n_train} train, {n_test} test, {size}px)")


def _render_glyphs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    shapes = list(_GLYPHS.values())
    labels = np.arange(n) % len(shapes)
    rng.shuffle(labels)
    scale_up = 4  # draw large, then downsample: smooth edges
    big = size * scale_up
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        bg = rng.integers(0, 110, 3)
        fg = rng.integers(140, 256, 3)
        img = Image.new("RGB", (big, big), tuple(int(c) for c in bg))
        angle = rng.uniform(-0.25, 0.25)
        scale = rng.uniform(0.28, 0.42) * big
        cx, cy = (0.5 + rng.uniform(-0.12, 0.12, 2)) * big
        cos, sin = math.cos(angle), math.sin(angle)
        pts = [(cx + scale * (x * cos - y * sin), cy + scale * (x * sin + y * cos))
               for x, y in shapes[label]]
        ImageDraw.Draw(img).polygon(pts, fill=tuple(int(c) for c in fg))
        arr = np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.int16)
        arr = arr + rng.normal(0, 12, arr.shape).astype(np.int16)
        out[i] = np.clip(arr, 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long()




def num_classes(s: Settings) -> int:
    """How many classes the dataset has, without loading its images."""
    if s.dataset in ("synthetic", "cifar10"):
        return len(_GLYPHS) if s.dataset == "synthetic" else len(CIFAR10_CLASSES)
    if s.dataset == "hdf5":
        return len(load_hdf5(Path(s.data_dir), s.image_size).classes)
    train = Path(s.data_dir) / "train"
    if not train.is_dir():
        raise DataError(f"image folder not found in {s.data_dir} (looked for train/<class>/)")
    return sum(1 for p in train.iterdir() if p.is_dir())


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)
