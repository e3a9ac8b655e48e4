"""The dataset card of an experiment (python -m engine dataset NAME): where its data is,
the classes, images per class, image sizes and four sample images, in the terminal and
as a PNG.

Cheap on a large image folder: files are counted by listing the class folders (the same
layout and extensions as sources.load_imagefolder), sizes come from the image headers
(of a fixed random sample past SAMPLE_OVER files), and only the four samples are
decoded. CIFAR-10 pickles, the synthetic glyphs and HDF5 files are read by their loaders
in sources.py and data.py, whose labels give the counts. The card describes the dataset
on disk: an experiment's subset settings (limit_train, ...) are named in a note."""
from __future__ import annotations

import statistics
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.core.errors import DataError
from engine.data.datasets import synthetic
from engine.data.folders import DEMO_HINT, IMAGE_EXTENSIONS, layout, scan_split
from engine.data.sources import cifar_batches_dir, load_cifar10, load_hdf5
from engine.report.export import pyplot, save_figure
from engine.report.pixels import half_blocks, image_grid, per_row

SAMPLE_OVER = 20_000  # past this many files, sizes come from a sample of SAMPLE_N headers
SAMPLE_N = 2_000
SAMPLE_SEED = 0
PIXELS = 16  # a sample image's width in the terminal, in columns
MAX_BARS = 60  # more classes than this: the largest and smallest MAX_BARS // 2 are drawn
SUBSET_SETTINGS = ("limit_train", "limit_test", "per_class_train", "label_fraction",
                   "train_val_split")
BAR_EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass
class Card:
    kind: str  # imagefolder | cifar10 | synthetic | hdf5
    source: str  # what and where, one line
    root: str
    classes: tuple
    train: list[int]  # images per class, in class order
    test: list[int]
    sizes: dict  # size_summary()
    test_split: str = "test"  # the folder or HDF5 key the test images come from
    experiment: str = ""
    image_size: int = 0  # what training decodes or resizes to (settings.image_size)
    samples: list = field(default_factory=list)  # (HWC uint8 array, class, where from)
    notes: list[str] = field(default_factory=list)

    def per_class(self) -> dict:
        """Train images per class: min, median, max, and max/min (None with an empty class)."""
        lo, hi = min(self.train, default=0), max(self.train, default=0)
        return {"min": lo, "median": _num(statistics.median(self.train or [0])), "max": hi,
                "imbalance": round(hi / lo, 2) if lo else None}

    def to_json(self, png: Path | None = None) -> dict:
        return {"experiment": self.experiment, "dataset": self.kind, "source": self.source,
                "root": self.root, "classes": list(self.classes),
                "train": dict(zip(self.classes, self.train)),
                "test": dict(zip(self.classes, self.test)), "test_split": self.test_split,
                "train_images": sum(self.train), "test_images": sum(self.test),
                "per_class": self.per_class(), "sizes": self.sizes,
                "image_size": self.image_size,
                "samples": [{"class": c, "from": where} for _, c, where in self.samples],
                "notes": self.notes, "png": str(png) if png else None}


def _num(x):
    return int(x) if float(x).is_integer() else round(float(x), 2)


def build_card(s, experiment: str = "") -> Card:
    """The card of settings `s` (data_dir already resolved, as runner.resolve_settings
    gives it); a dataset that is not there is a DataError saying where it looked."""
    root = Path(s.data_dir)
    if s.dataset == "synthetic":
        card = _synthetic_card(s)
    elif s.dataset == "hdf5":
        card = _hdf5_card(root, s.image_size)
    elif s.dataset == "cifar10":
        card = _cifar_card(root)
    else:
        card = folder_card(root)
    card.experiment, card.image_size = experiment, s.image_size
    subset = [f"{k} = {getattr(s, k)}" for k in SUBSET_SETTINGS
              if getattr(s, k, None) not in (None, 0, 1, 1.0, 0.0)]
    if subset:
        card.notes.append(f"this experiment trains on a subset ({', '.join(subset)}); "
                          "the counts are the whole dataset")
    return card


def two_largest(counts: list[int]) -> list[int]:
    """The sample classes: the two with most train images (ties: the first in order)."""
    return sorted((i for i, n in enumerate(counts) if n), key=lambda i: -counts[i])[:2]


# --------------------------------------------------------------------------- image folders
def folder_card(root: Path) -> Card:
    """Counts from directory listings, sizes from headers, four images decoded."""
    train_dir, test_dir, classes = layout(root)
    train, test = scan_split(train_dir, classes), scan_split(test_dir, classes)
    card = Card("imagefolder", f"image folder {root} ({len(classes)} classes)", str(root),
                tuple(classes), _count([y for _, y in train], len(classes)),
                _count([y for _, y in test], len(classes)), {}, test_dir.name)
    extra = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name not in classes)
    if extra:
        card.notes.append(f"training refuses this folder: {test_dir.name}/ has classes that "
                          f"train/ lacks: {', '.join(extra[:5])}")
    if not train or not test:
        card.notes.append(f"training refuses this folder: no images under "
                          f"{train_dir if not train else test_dir} (extensions: "
                          f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    paths = [p for p, _ in train + test]
    sampled = len(paths) > SAMPLE_OVER
    if sampled:
        pick = np.random.default_rng(SAMPLE_SEED).choice(len(paths), SAMPLE_N, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    sizes, bad = header_sizes(paths)
    card.sizes = size_summary(sizes, "headers", len(train) + len(test), sampled)
    if bad:
        card.notes.append(f"{len(bad)} file(s) unreadable as images, e.g. {bad[0]}")
    for c in two_largest(card.train):
        for p in [p for p, y in train if y == c][:2]:
            try:
                card.samples.append((_decode(p), classes[c], str(p)))
            except (OSError, ValueError) as exc:
                card.notes.append(f"sample {p} unreadable: {exc}")
    return card


def _count(labels, n_classes: int) -> list[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).tolist()


def _size_of(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header; decodes nothing
                return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def header_sizes(paths: list[Path]) -> tuple[list[tuple[int, int]], list[Path]]:
    """(width, height) of each readable file from its header, and the unreadable files."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(_size_of, paths, chunksize=64))
    return ([s for s in found if s is not None],
            [p for p, s in zip(paths, found) if s is None])


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def size_summary(sizes: list[tuple[int, int]], read_from: str, files: int,
                 sampled: bool = False) -> dict:
    """min/median/max width and height, the distinct sizes and the most common one's share.
    `read_from`: "headers" (the original files) or "arrays" (sizes as stored)."""
    out = {"from": read_from, "files": files, "read": len(sizes), "sampled": sampled}
    if not sizes:
        return out
    counts = Counter(sizes)
    common, n = counts.most_common(1)[0]
    w, h = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
    return {**out, **{k: {"min": int(a.min()), "median": _num(np.median(a)), "max": int(a.max())}
                      for k, a in (("width", w), ("height", h))},
            "distinct": len(counts), "most_common": list(common),
            "most_common_share": round(n / len(sizes), 4)}


# --------------------------------------------------------------------------- in-memory kinds
def _cifar_card(root: Path) -> Card:

    batches = cifar_batches_dir(root)
    if batches is None and (root / "train").is_dir():  # as load_cifar10: an image folder
        card = folder_card(root)
        card.source += ", read as CIFAR-10"
        return card
    if batches is None:
        raise DataError(f"CIFAR-10 not found in {root} (looked for cifar-10-batches-py/ and "
                        "train/<class>/); the card never downloads it, a run does (with "
                        "download = true). Or set data_dir, " + DEMO_HINT)
    return _split_card(load_cifar10(root, False, 32), "cifar10", f"CIFAR-10 from {batches}",
                       batches, (32, 32))


def _synthetic_card(s) -> Card:

    return _split_card(synthetic(s.synthetic_train, s.synthetic_test, s.image_size),
                       "synthetic", "synthetic glyphs (drawn at load, fixed seeds)", "",
                       (s.image_size, s.image_size))


def _hdf5_card(root: Path, image_size: int) -> Card:
    import h5py


    data = load_hdf5(root, image_size)
    with h5py.File(data.train.path, "r") as f:
        shape = f[data.train.images].shape
    hw = shape[1:3] if data.train.hwc else shape[2:4]
    card = _split_card(data, "hdf5", f"HDF5 {data.train.path}", data.train.path,
                       (int(hw[1]), int(hw[0])), test_split="val")
    if data.predict is not None:
        card.notes.append(f"and {len(data.predict):,} unlabelled test images (images-test)")
    return card


def _split_card(data, kind: str, source: str, root, size: tuple[int, int],
                test_split: str = "test") -> Card:
    """A card of a loaded Dataset whose images all have one stored `size` (width, height)."""
    import torch

    n = len(data.classes)
    train_y, test_y = data.train.labels().numpy(), data.test.labels().numpy()
    card = Card(kind, source, str(root), tuple(data.classes), _count(train_y, n),
                _count(test_y, n), {}, test_split)
    card.sizes = size_summary([size] * (len(train_y) + len(test_y)), "arrays",
                              len(train_y) + len(test_y))
    picks = two_largest(card.train)
    idx = sorted(int(i) for c in picks for i in np.flatnonzero(train_y == c)[:2])
    if idx:  # sorted: an HDF5 split reads its rows in order
        x, y = next(data.train.subset(torch.tensor(idx)).batches(len(idx), torch.device("cpu")))
        found = [(img.permute(1, 2, 0).numpy(), card.classes[int(t)], f"train image {i}")
                 for img, t, i in zip(x, y, idx)]
        card.samples = sorted(found, key=lambda s: picks.index(card.classes.index(s[1])))
    return card


# --------------------------------------------------------------------------- output
def shown_classes(card: Card) -> tuple[list[int], int]:
    """The classes drawn (all, in order; or the largest and smallest MAX_BARS // 2 by
    train images) and how many are left out."""
    n = len(card.classes)
    if n <= MAX_BARS:
        return list(range(n)), 0
    order = sorted(range(n), key=lambda i: (-card.train[i], i))
    half = MAX_BARS // 2
    return order[:half] + order[-half:], n - MAX_BARS


def bar(n: int, most: int, width: int) -> str:
    eighths = round(8 * width * n / most) if most else 0
    if n and not eighths:
        eighths = 1  # a class with any images shows
    full, part = divmod(eighths, 8)
    return "█" * full + (BAR_EIGHTHS[part] if part else "")


def size_line(card: Card) -> str:
    z = card.sizes
    if not z.get("read"):
        return "no image could be read"
    w, h = z["width"], z["height"]
    if z["distinct"] == 1:
        size = f"all {w['min']}x{h['min']}"
    else:
        size = (f"width {w['min']}-{w['max']} (median {w['median']}), height {h['min']}-"
                f"{h['max']} (median {h['median']}); {z['distinct']} distinct sizes, "
                f"{z['most_common'][0]}x{z['most_common'][1]} the most common "
                f"({100 * z['most_common_share']:.0f}%)")
    if z["from"] == "arrays":
        return f"{size}, as stored"
    where = (f"a random {z['read']:,} of {z['files']:,} files" if z["sampled"]
             else f"all {z['read']:,} files")
    return f"{size} (original files; headers of {where})"


def render_card(card: Card, width: int = 80) -> Group:
    pc = card.per_class()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="dim", no_wrap=True)
    head.add_column()
    s = card.image_size
    trained = (f"each image decoded once and resized to {s}x{s} (image_size)"
               if card.kind == "imagefolder" else
               f"{s}x{s} (image_size)" + ("" if card.sizes.get("most_common") == [s, s]
                                           else ", resized from the stored size"))
    for label, value in (
            ("source", card.source),
            ("classes", f"{len(card.classes)}; train {sum(card.train):,} images, test "
                        f"{sum(card.test):,}" + ("" if card.test_split == "test"
                                                 else f" (from {card.test_split})")),
            ("per class", f"train min {pc['min']:,}, median {pc['median']:,}, max "
                          f"{pc['max']:,}; imbalance "
                          + (f"{pc['imbalance']:g}x (max/min)" if pc["imbalance"]
                             else "- (a class has no train images)")),
            ("sizes", size_line(card)),
            ("trained at", trained),
            *(("note", n) for n in card.notes)):
        head.add_row(label, value)
    parts = [Text(f"Dataset card: {card.experiment}", style="bold"), head, Text(),
             bar_chart(card, width)]
    if card.samples:
        cells = []
        for img, name, _ in card.samples:
            text = half_blocks(_thumbnail(img, PIXELS))
            text.append(name[:PIXELS], style="bold")
            cells.append(text)
        picked = list(dict.fromkeys(name for _, name, _ in card.samples))
        parts += [Text(), Text("samples of the largest classes: "
                               + ", ".join(picked), style="dim"),
                  image_grid(cells, min(len(cells), per_row(width, PIXELS)))]
    return Group(*parts)


def bar_chart(card: Card, width: int) -> Table:
    idx, left_out = shown_classes(card)
    names = [card.classes[i] for i in idx]
    name_w = min(24, max([5, *map(len, names)]))
    num_w = max(5, len(f"{max(card.train, default=0):,}"), len(f"{max(card.test, default=0):,}"))
    bar_w = max(8, min(60, width - name_w - 2 * num_w - 6))
    most = max(card.train, default=0)
    t = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False,
              title="images per class" + (f" (the {MAX_BARS // 2} largest and smallest of "
                                          f"{len(card.classes)}; --json has all)"
                                          if left_out else ""),
              title_justify="left", title_style="dim")
    t.add_column("class", max_width=name_w, no_wrap=True, overflow="ellipsis")
    t.add_column("", width=bar_w, no_wrap=True)
    t.add_column("train", justify="right")
    t.add_column(card.test_split, justify="right", style="dim")
    for k, i in enumerate(idx):
        if left_out and k == MAX_BARS // 2:
            t.add_row("…", f"{left_out:,} more classes", "", "", style="dim")
        t.add_row(card.classes[i], Text(bar(card.train[i], most, bar_w), style="cyan"),
                  f"{card.train[i]:,}", f"{card.test[i]:,}")
    return t


def _thumbnail(img: np.ndarray, pixels: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((pixels, pixels), Image.BILINEAR))


def save_card_png(card: Card, path: Path) -> Path:
    """Images per class (train and test bars) beside the four samples."""

    plt = pyplot()
    idx, left_out = shown_classes(card)
    fig = plt.figure(figsize=(12, max(4.0, 0.28 * len(idx) + 1.5)), layout="constrained")
    axes = fig.subplot_mosaic([["bars", "s0", "s1"], ["bars", "s2", "s3"]],
                              width_ratios=[2.2, 1, 1])
    ax = axes["bars"]
    y = np.arange(len(idx))[::-1]
    ax.barh(y + 0.2, [card.train[i] for i in idx], height=0.4, label="train")
    ax.barh(y - 0.2, [card.test[i] for i in idx], height=0.4, label=card.test_split)
    ax.set_yticks(y, [card.classes[i] for i in idx], fontsize=8)
    ax.set_xlabel("images")
    ax.set_title("images per class" + (f" ({len(idx)} of {len(card.classes)})"
                                       if left_out else ""))
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              frameon=False)
    for k in range(4):
        a = axes[f"s{k}"]
        a.axis("off")
        if k < len(card.samples):
            img, name, _ = card.samples[k]
            a.imshow(img, interpolation="nearest")
            a.set_title(f"{name} ({img.shape[1]}x{img.shape[0]})", fontsize=9)
    return save_figure(fig, path, f"{card.experiment}: {card.source}")
