"""Datasets as whole uint8 tensors, and batches built on the training device.

In-memory datasets (CIFAR-10, synthetic, image folders up to a few GB) are held as one
uint8 NCHW tensor on the device; crop, flip, rotation and normalisation are batched
tensor ops, so the hot loop has no per-sample Python and no DataLoader workers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import Settings

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}
DEMO_HINT = "or try the synthetic demo: python -m engine run demo"


class DataError(Exception):
    """A dataset that cannot be found or read; the message says where we looked."""


def _to_device(xb: torch.Tensor, device: torch.device) -> torch.Tensor:
    if xb.device == device:
        return xb
    if device.type == "cuda":
        xb = xb.pin_memory()
    return xb.to(device, non_blocking=True)


class TensorSplit:
    """A split held whole as a uint8 tensor: on the training device when it fits, else in
    host memory, from which each batch is gathered, pinned and copied asynchronously."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def labels(self) -> torch.Tensor | None:
        return self.y

    def subset(self, idx: torch.Tensor) -> "TensorSplit":
        idx = idx.to(self.x.device)
        return TensorSplit(self.x[idx], self.y[idx] if self.y is not None else None)

    def to(self, device) -> "TensorSplit":
        return TensorSplit(self.x.to(device), self.y.to(device) if self.y is not None else None)

    def batches(self, batch_size: int, device: torch.device, seed: int | None = None,
                drop_last: bool = False):
        """uint8 batches on `device`; shuffled by `seed` when given (drop_last: no ragged
        final batch, which BatchNorm dislikes)."""
        n, here = len(self), self.x.device
        if seed is None:
            order = torch.arange(n, device=here)
        else:
            order = torch.randperm(n, device=here,
                                   generator=torch.Generator(device=here).manual_seed(seed))
        steps = max(1, n // batch_size) if drop_last else -(-n // batch_size)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yb = self.y[idx] if self.y is not None else None
            yield _to_device(self.x[idx], device), (_to_device(yb, device) if yb is not None
                                                     else None)


class HDF5Split:
    """A split of an HDF5 file, read in contiguous chunks (in random order, then shuffled
    in a buffer of several chunks) by a background thread, so that 1.5 million images
    never need to fit in memory. Images are (N, 3, H, W) or (N, H, W, 3) uint8; they are
    resized to `size` on the device when stored at another size."""

    CHUNK = 2048
    BUFFER_CHUNKS = 4

    def __init__(self, path: Path, images: str, labels: str | None, size: int, rows=None):
        import h5py

        self.path, self.images, self.labels_key, self.target = Path(path), images, labels, size
        with h5py.File(self.path, "r") as f:
            shape = f[images].shape
            self._labels = (torch.from_numpy(np.asarray(f[labels][:], dtype=np.int64))
                            if labels else None)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise DataError(f"{path}:{images} has shape {shape}; expected (N, 3, H, W) or "
                            "(N, H, W, 3) uint8")
        self.hwc = shape[3] == 3 and shape[1] != 3
        self.size = shape[1] if self.hwc else shape[2]
        self.rows = np.arange(shape[0]) if rows is None else np.sort(np.asarray(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> torch.Tensor | None:
        return self._labels[torch.from_numpy(self.rows)] if self._labels is not None else None

    def subset(self, idx: torch.Tensor) -> "HDF5Split":
        return HDF5Split(self.path, self.images, self.labels_key, self.target,
                         self.rows[idx.cpu().numpy()])

    def _read(self, starts: list[int], q) -> None:
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                images = f[self.images]
                for start in starts:
                    rows = self.rows[start:start + self.CHUNK]
                    lo, hi = int(rows[0]), int(rows[-1]) + 1
                    x = images[lo:hi] if hi - lo == len(rows) else images[rows]
                    if self.hwc:
                        x = x.transpose(0, 3, 1, 2)
                    y = (self._labels[torch.from_numpy(rows)] if self._labels is not None
                         else torch.full((len(rows),), -1, dtype=torch.long))
                    q.put((torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8)), y))
        except Exception as exc:  # handed over to the training thread
            q.put(exc)
        q.put(None)

    def batches(self, batch_size: int, device: torch.device, seed: int | None = None,
                drop_last: bool = False):
        import queue
        import threading

        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        starts = list(range(0, len(self), self.CHUNK))
        if gen is not None:
            starts = [starts[i] for i in torch.randperm(len(starts), generator=gen)]
        q: queue.Queue = queue.Queue(maxsize=2)
        threading.Thread(target=self._read, args=(starts, q), daemon=True).start()
        xs, ys = [], []
        while True:
            item = q.get()
            if isinstance(item, Exception):
                raise DataError(f"reading {self.path}: {item}")
            last = item is None
            if not last:
                xs.append(item[0])
                ys.append(item[1])
                if len(xs) < self.BUFFER_CHUNKS:
                    continue
            if not xs:
                return
            x, y = torch.cat(xs), torch.cat(ys)
            if gen is not None:
                perm = torch.randperm(len(x), generator=gen)
                x, y = x[perm], y[perm]
            cut = len(x) if last and not drop_last else len(x) // batch_size * batch_size
            for i in range(0, cut, batch_size):
                xb = _to_device(x[i:i + batch_size], device)
                if self.size != self.target:
                    xb = resize_u8(xb, self.target)
                yield xb, (_to_device(y[i:i + batch_size], device) if self.labels_key else None)
            if last:
                return
            xs, ys = [x[cut:]], [y[cut:]]


@dataclass
class Dataset:
    train: TensorSplit | HDF5Split
    test: TensorSplit | HDF5Split
    classes: tuple
    mean: tuple
    std: tuple
    source: str  # where it came from, for the log
    predict: TensorSplit | HDF5Split | None = None  # unlabelled split for submission.csv

    def place(self, device: torch.device, placement: str) -> "Dataset":
        """In-memory splits go to the device unless they would not fit (auto: over half
        of the free device memory), in which case batches stream from host memory."""
        splits = [sp for sp in (self.train, self.test, self.predict)
                  if isinstance(sp, TensorSplit)]
        nbytes = sum(sp.x.numel() for sp in splits)
        on_device = placement == "device" or (placement == "auto" and (
            device.type != "cuda" or nbytes < 0.5 * torch.cuda.mem_get_info(device)[0]))
        if not on_device:
            return self
        moved = {name: (sp.to(device) if isinstance(sp, TensorSplit) else sp)
                 for name, sp in (("train", self.train), ("test", self.test),
                                  ("predict", self.predict)) if sp is not None}
        return dataclasses.replace(self, **moved)


def load_dataset(s: Settings) -> Dataset:
    if s.dataset == "synthetic":
        data = synthetic(s.synthetic_train, s.synthetic_test, s.image_size)
    elif s.dataset == "cifar10":
        data = load_cifar10(Path(s.data_dir), s.download, s.image_size)
    elif s.dataset == "hdf5":
        data = load_hdf5(Path(s.data_dir), s.image_size)
    else:
        data = load_imagefolder(Path(s.data_dir), s.image_size)
    if s.per_class_train:
        data.train = data.train.subset(per_class_subset(data.train.labels(), s.per_class_train))
    if s.limit_train:
        data.train = data.train.subset(stratified_subset(data.train.labels(), s.limit_train))
    if s.limit_test:
        data.test = data.test.subset(stratified_subset(data.test.labels(), s.limit_test))
    return data


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_hdf5(path: Path, size: int) -> Dataset:
    """The seed's MediumImageNet layout: one file with images-train, labels-train,
    images-val, labels-val and images-test (no labels). Trains on train, reports val as
    the test metrics, and predicts test into submission.csv. Class names come from a
    "classes" dataset or attribute when present, else 0..C-1."""
    import h5py

    if path.is_dir():
        files = sorted(path.glob("*.hdf5")) + sorted(path.glob("*.h5"))
        if not files:
            raise DataError(f"no .hdf5 or .h5 file in {path} (set data_dir to the file). "
                            + DEMO_HINT)
        path = files[0]
    if not path.exists():
        raise DataError(f"HDF5 file {path} not found. Set data_dir to it, " + DEMO_HINT)
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            missing = {"images-train", "labels-train", "images-val", "labels-val"} - keys
            if missing:
                raise DataError(f"{path} lacks {', '.join(sorted(missing))} (has: "
                                f"{', '.join(sorted(keys))}); see docs/config.md for the layout")
            names = f["classes"][:] if "classes" in keys else f.attrs.get("classes")
            n_classes = int(np.max(f["labels-train"][:])) + 1
    except OSError as exc:
        raise DataError(f"cannot read {path} as HDF5: {exc}") from None
    classes = (tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
               if names is not None else tuple(str(i) for i in range(n_classes)))
    train = HDF5Split(path, "images-train", "labels-train", size)
    test = HDF5Split(path, "images-val", "labels-val", size)
    predict = HDF5Split(path, "images-test", None, size) if "images-test" in keys else None
    return Dataset(train, test, classes, IMAGENET_MEAN, IMAGENET_STD,
                   f"HDF5 {path} ({len(train)} train, {len(test)} val, "
                   f"{len(predict) if predict else 0} unlabelled test)", predict)


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


def channel_stats(x: torch.Tensor) -> tuple[tuple, tuple]:
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for chunk in x.split(4096):
        c = chunk.double() / 255
        total += c.sum(dim=(0, 2, 3))
        total_sq += (c * c).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-6).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


# --------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickles; allow numpy arrays and nothing that runs code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = _ArrayUnpickler(f, encoding="bytes").load()
    data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(d.get(b"labels", d.get(b"fine_labels")), dtype=np.int64)
    return data, labels


def _cifar_batches_dir(root: Path) -> Path | None:
    for cand in (root / "cifar-10-batches-py", root):
        if (cand / "data_batch_1").exists() and (cand / "test_batch").exists():
            return cand
    return None


def load_cifar10(root: Path, download: bool, size: int) -> Dataset:
    batches = _cifar_batches_dir(root)
    if batches is None and (root / "train").is_dir():
        return load_imagefolder(root, size, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    if batches is None and download:
        batches = _download_cifar10(root)
    if batches is None:
        raise DataError(
            f"CIFAR-10 not found in {root} (looked for cifar-10-batches-py/ and train/<class>/)"
            f"{'' if download else '; download = false'}. Put the dataset there, set data_dir, "
            + DEMO_HINT)
    try:
        parts = [_read_cifar_batch(batches / f"data_batch_{i}") for i in range(1, 6)]
        test_x, test_y = _read_cifar_batch(batches / "test_batch")
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"CIFAR-10 in {batches} is unreadable ({exc}); delete it and "
                        "download again") from None
    train_x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    test_x = torch.from_numpy(test_x)
    if size != 32:
        train_x, test_x = resize_u8(train_x, size), resize_u8(test_x, size)
    return Dataset(TensorSplit(train_x, train_y), TensorSplit(test_x, torch.from_numpy(test_y)),
                   CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, f"CIFAR-10 from {batches}")


def _download_cifar10(root: Path) -> Path | None:
    from torchvision.datasets import CIFAR10

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # no network, a proxy, a full disk: all end the same way
        raise DataError(
            f"CIFAR-10 not found in {root} (looked for cifar-10-batches-py/ and "
            f"train/<class>/) and the download failed ({type(exc).__name__}: {exc}). "
            "Put the dataset there, set data_dir, " + DEMO_HINT) from None
    finally:
        socket.setdefaulttimeout(old)
    return _cifar_batches_dir(root)


def resize_u8(x: torch.Tensor, size: int) -> torch.Tensor:
    out = []
    for chunk in x.split(2048):
        r = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
        out.append(r.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


# --------------------------------------------------------------------------- image folders
def _scan_split(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    items = []
    for i, cls in enumerate(classes):
        d = split_dir / cls
        if d.is_dir():
            items.extend((p, i) for p in sorted(d.iterdir())
                         if p.suffix.lower() in IMAGE_EXTENSIONS)
    return items


def load_imagefolder(root: Path, size: int, mean=None, std=None) -> Dataset:
    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"image folder not found in {root} (looked for train/<class>/ and "
                        "test/<class>/ or val/<class>/). Put the images there, set data_dir, "
                        + DEMO_HINT)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{train_dir} has no class folders (expected train/<class>/*.jpg)")
    extra = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name not in classes)
    if extra:
        raise DataError(f"{test_dir} has classes that train/ lacks: {', '.join(extra[:5])}")
    train_items, test_items = _scan_split(train_dir, classes), _scan_split(test_dir, classes)
    if not train_items or not test_items:
        raise DataError(f"no images under {train_dir if not train_items else test_dir} "
                        f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    train_x, train_y = _decode_cached(root, "train", train_items, size)
    test_x, test_y = _decode_cached(root, test_dir.name, test_items, size)
    if mean is None:
        mean, std = channel_stats(train_x)
    return Dataset(TensorSplit(train_x, train_y), TensorSplit(test_x, test_y), tuple(classes),
                   mean, std, f"image folder {root} ({len(classes)} classes, {size}px)")


def _cache_dir(root: Path) -> Path:
    here = root / ".rotunda-cache"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rotunda" / digest
    d.mkdir(parents=True, exist_ok=True)
    return d


def _decode_cached(root: Path, split: str, items: list, size: int):
    """Decode every image once into a uint8 array on disk; later runs memory-map it."""
    h = hashlib.sha1()
    for p, label in items:
        st = p.stat()
        h.update(f"{p.name}:{label}:{st.st_size}:{st.st_mtime_ns}".encode())
    key = f"{split}-{size}-{h.hexdigest()[:16]}"
    cache = _cache_dir(root)
    x_path, y_path = cache / f"{key}.x.npy", cache / f"{key}.y.npy"
    if x_path.exists() and y_path.exists():
        return torch.from_numpy(np.load(x_path)), torch.from_numpy(np.load(y_path))

    def decode(item):
        from PIL import Image
        path, _ = item
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None

    x = np.empty((len(items), 3, size, size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for i, arr in enumerate(pool.map(decode, items, chunksize=64)):
            x[i] = arr
    y = np.array([label for _, label in items], dtype=np.int64)
    for path, arr in ((x_path, x), (y_path, y)):
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, path)
    (cache / f"{key}.json").write_text(json.dumps({"root": str(root), "split": split,
                                                   "size": size, "count": len(items)}))
    return torch.from_numpy(x), torch.from_numpy(y)


# --------------------------------------------------------------------------- batches
def crop_flip(x: torch.Tensor, gen: torch.Generator, crop: bool, flip: bool, pad: int = 4):
    """Random pad-and-crop with one gather, and a horizontal flip on a random half."""
    b, c, h, w = x.shape
    dev = x.device
    if crop:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=gen)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        x = padded[torch.arange(b, device=dev)[:, None, None, None],
                   torch.arange(c, device=dev)[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(b, device=dev, generator=gen) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero one size x size patch per image at a random centre (clipped at the borders)."""
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b,), device=dev, generator=gen)[:, None, None]
    cx = torch.randint(0, w, (b,), device=dev, generator=gen)[:, None, None]
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    lo = size // 2
    mask = ((ys >= cy - lo) & (ys < cy - lo + size) & (xs >= cx - lo) & (xs < cx - lo + size))
    return x.masked_fill(mask[:, None], 0)


def rotate_batch(x: torch.Tensor, mode: str, gen: torch.Generator | None = None):
    """Rotation-pretext inputs and labels: label k means a k quarter turns counter-clockwise.
    all4: every image in all four rotations (Gidaris et al.); random: one rotation each."""
    b = x.shape[0]
    if mode == "all4":
        xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        ys = torch.arange(4, device=x.device).repeat_interleave(b)
        return xs, ys
    ks = torch.randint(0, 4, (b,), device=x.device, generator=gen)
    out = x.clone()
    for k in (1, 2, 3):
        m = ks == k
        out[m] = torch.rot90(x[m], k, dims=(2, 3))
    return out, ks


class Normalizer:
    def __init__(self, mean, std, device, channels_last: bool):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.channels_last = channels_last

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = (x_u8.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)
