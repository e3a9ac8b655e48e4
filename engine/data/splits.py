"""Where a dataset's images live and how batches come out of them: a split held whole as
a uint8 tensor (on the device when it fits), or an HDF5 file streamed in chunks; the
Dataset that pairs them with class names and normalisation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.core.errors import DataError


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
                drop_last: bool = False, rank: int = 0, world: int = 1):
        """uint8 batches on `device`; shuffled by `seed` when given (drop_last: no ragged
        final batch, which BatchNorm dislikes). With `world` ranks, each batch of the one
        order (the same seed on every rank) is split rank-strided: rank r takes its
        images r, r + world, ..."""
        n, here = len(self), self.x.device
        if seed is None:
            order = torch.arange(n, device=here)
        else:
            order = torch.randperm(n, device=here,
                                   generator=torch.Generator(device=here).manual_seed(seed))
        steps = max(1, n // batch_size) if drop_last else -(-n // batch_size)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            if world > 1:
                idx = idx[rank::world]
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
                drop_last: bool = False, rank: int = 0, world: int = 1):
        """As TensorSplit.batches; with several ranks every rank reads the whole stream
        and keeps its rank-strided share of each batch."""
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
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                if world > 1:
                    xb, yb = xb[rank::world], yb[rank::world]
                xb = _to_device(xb, device)
                if self.size != self.target:
                    xb = resize_u8(xb, self.target)
                yield xb, (_to_device(yb, device) if self.labels_key else None)
            if last:
                return
            xs, ys = [x[cut:]], [y[cut:]]


def shard(split: TensorSplit | HDF5Split, rank: int, world: int):
    """The rank's contiguous share of a split, in order: the ranks' predictions,
    concatenated in rank order, are the split's (evaluation over several ranks)."""
    n = len(split)
    lo, hi = rank * n // world, (rank + 1) * n // world
    if isinstance(split, TensorSplit):
        return TensorSplit(split.x[lo:hi], split.y[lo:hi] if split.y is not None else None)
    return split.subset(torch.arange(lo, hi))


@dataclass
class Dataset:
    train: TensorSplit | HDF5Split
    test: TensorSplit | HDF5Split
    classes: tuple
    mean: tuple
    std: tuple
    source: str  # where it came from, for the log
    predict: TensorSplit | HDF5Split | None = None  # unlabelled split for submission.csv
    val: TensorSplit | HDF5Split | None = None  # held out of train (train_val_split)

    def splits(self) -> dict:
        return {name: sp for name in ("train", "val", "test", "predict")
                if (sp := getattr(self, name)) is not None}

    def place(self, device: torch.device, placement: str) -> "Dataset":
        """In-memory splits go to the device unless they would not fit (auto: over half
        of the free device memory), in which case batches stream from host memory."""
        splits = [sp for sp in self.splits().values() if isinstance(sp, TensorSplit)]
        nbytes = sum(sp.x.numel() for sp in splits)
        on_device = placement == "device" or (placement == "auto" and (
            device.type != "cuda" or nbytes < 0.5 * torch.cuda.mem_get_info(device)[0]))
        if not on_device:
            return self
        moved = {name: (sp.to(device) if isinstance(sp, TensorSplit) else sp)
                 for name, sp in self.splits().items()}
        return dataclasses.replace(self, **moved)


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


def resize_u8(x: torch.Tensor, size: int) -> torch.Tensor:
    out = []
    for chunk in x.split(2048):
        r = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
        out.append(r.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


class Normalizer:
    """uint8 batch -> the model's input: normalised, channels_last when asked, and resized
    (bilinear; antialiased when shrinking) from `stored` to `size` pixels. Only whole
    images, at the stored size, are resized: a task's smaller views (jigsaw's tiles) are
    the model's input as they are."""

    def __init__(self, mean, std, device, channels_last: bool, stored: int = 0,
                 size: int = 0):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.channels_last, self.stored, self.size = channels_last, stored, size

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = (x_u8.float() - self.mean) / self.std
        if self.size != self.stored and x.shape[-1] == self.stored:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=self.stored > self.size)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
