"""Small real datasets that tests write: CIFAR-10 pickles, image folders, HDF5 files."""
import pickle

import numpy as np
from PIL import Image


def write_cifar(root, n_train=20, n_test=10):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n).tolist())}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


def write_folder(root, classes=("cat", "dog", "emu"), per_class=4, size=(40, 30)):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")


def write_h5(path, n_train=48, n_val=24, n_test=13, size=12, hwc=False):
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)

    def images(n):
        x = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
        return x.transpose(0, 2, 3, 1) if hwc else x

    with h5py.File(path, "w") as f:
        f["images-train"] = images(n_train)
        f["labels-train"] = np.arange(n_train) % 4
        f["images-val"] = images(n_val)
        f["labels-val"] = np.arange(n_val) % 4
        f["images-test"] = images(n_test)
    return path


UNEVEN_TRAIN = {"cat": 7, "dog": 3, "emu": 1}
UNEVEN_TEST = {"cat": 2, "dog": 1}  # no emu/ in test: a class with no test images
UNEVEN_SIZES = [(40, 30), (20, 20), (64, 48), (40, 30)]  # (width, height), in turn


def write_uneven_folder(root):
    """Classes of 7, 3 and 1 train images (2, 1 and 0 test), PNG and JPEG files of the
    sizes in UNEVEN_SIZES in turn; returns the (width, height) of every file written."""
    rng = np.random.default_rng(2)
    written = []
    for split, counts in (("train", UNEVEN_TRAIN), ("test", UNEVEN_TEST)):
        for c, n in counts.items():
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                w, h = UNEVEN_SIZES[len(written) % len(UNEVEN_SIZES)]
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.{'jpg' if i % 2 else 'png'}")
                written.append((w, h))
    return written


def dino_loss_probe(loss_fn, n, dim=16):
    """DINO's loss on a fixed teacher/student pair as a function of its keywords (epoch,
    teacher_temp), the centre put back after each call so that calls compare."""
    import torch

    teacher = list(torch.randn(2, n, dim, generator=torch.Generator().manual_seed(2)))
    student = list(torch.randn(2, n, dim, generator=torch.Generator().manual_seed(3)))

    def loss(**kw):
        center = loss_fn.center.clone()
        value = loss_fn(teacher, student, **kw).item()
        loss_fn.center.copy_(center)
        return value
    return loss
