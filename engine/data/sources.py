"""Reading datasets from disk: CIFAR-10 (torchvision's pickles, downloaded where there is
a network), image-folder trees (decoded once into a uint8 cache) and HDF5 files. Each
returns a Dataset of uint8 splits; a missing or unreadable dataset is a DataError that
says where it looked."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from engine.core.errors import DataError
from engine.data.folders import DEMO_HINT, IMAGE_EXTENSIONS, layout, scan_split
from engine.data.splits import Dataset, HDF5Split, TensorSplit, channel_stats, resize_u8

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


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


def cifar_batches_dir(root: Path) -> Path | None:
    for cand in (root / "cifar-10-batches-py", root):
        if (cand / "data_batch_1").exists() and (cand / "test_batch").exists():
            return cand
    return None


def load_cifar10(root: Path, download: bool, size: int) -> Dataset:
    batches = cifar_batches_dir(root)
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
    return cifar_batches_dir(root)


# --------------------------------------------------------------------------- image folders
def load_imagefolder(root: Path, size: int, mean=None, std=None) -> Dataset:
    train_dir, test_dir, classes = layout(root)
    extra = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name not in classes)
    if extra:
        raise DataError(f"{test_dir} has classes that train/ lacks: {', '.join(extra[:5])}")
    train_items, test_items = scan_split(train_dir, classes), scan_split(test_dir, classes)
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
