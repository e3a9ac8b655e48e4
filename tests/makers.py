"""What tests write: small real datasets (CIFAR-10 pickles, image folders, HDF5 files)
and run directories."""
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from engine.core import rundir as rd


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


def _write_images(root, counts, seed, size_of, name_of):
    """root/SPLIT/CLASS/NAME for `counts` {split: {class: n}}, random pixels drawn in
    that order; image k (counted over all) is size_of(k) (width, height), named
    name_of(i) within its class. Returns the (width, height) of every file written."""
    rng = np.random.default_rng(seed)
    written = []
    for split, per_class in counts.items():
        for c, n in per_class.items():
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                w, h = size_of(len(written))
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / name_of(i))
                written.append((w, h))
    return written


def write_folder(root, classes=("cat", "dog", "emu"), per_class=4, size=(40, 30), seed=1,
                 splits=("train", "test")):
    """An image folder: `per_class` PNGs of `size` (width, height) in each class of each
    split."""
    counts = {split: dict.fromkeys(classes, per_class) for split in splits}
    return _write_images(root, counts, seed, lambda k: size, lambda i: f"{i}.png")


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
    return _write_images(root, {"train": UNEVEN_TRAIN, "test": UNEVEN_TEST}, 2,
                         lambda k: UNEVEN_SIZES[k % len(UNEVEN_SIZES)],
                         lambda i: f"{i}.{'jpg' if i % 2 else 'png'}")


def write_run(runs, exp, run_id, state="done", *, status=None, config=None, summary=None,
              metrics=(), log=None, checkpoints=False, files=None) -> Path:
    """A run directory as the engine lays one out (engine/core/rundir.py's names and
    writers): runs/EXP/RUN_ID with status.json ({"state": state, **status}), and where
    given config.toml (a dict, written as TOML, or text), summary.json, metrics.jsonl
    (records, one a line), log.txt, an empty checkpoints/, and other `files` by name
    (a dict is written as JSON, a str as it is). Returns the directory."""
    d = Path(runs) / exp / run_id
    d.mkdir(parents=True)
    if checkpoints:
        (d / rd.CHECKPOINTS).mkdir()
    rd.atomic_write_json(d / rd.STATUS, {"state": state, **(status or {})})
    if config is not None:
        rd.atomic_write_text(d / rd.CONFIG,
                             config if isinstance(config, str) else rd.dump_toml(config))
    if summary is not None:
        rd.atomic_write_json(d / rd.SUMMARY, summary)
    for record in metrics:
        rd.append_jsonl(d / rd.METRICS, record)
    if log is not None:
        rd.atomic_write_text(d / rd.LOG, log)
    for name, content in (files or {}).items():
        if isinstance(content, str):
            rd.atomic_write_text(d / name, content)
        else:
            rd.atomic_write_json(d / name, content)
    return d


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


def done_run(config, name, overrides=(), acc=0.5):
    """A run made by the engine's own create_run (its config.toml as a launch writes
    it), then recorded as done with test accuracy `acc`, without training."""
    from engine.runs.create import create_run

    run_dir, s = create_run(config, name, list(overrides), config.runs_dir())
    rd.update_status(run_dir, state="done", epoch=s.epochs)
    rd.atomic_write_json(run_dir / rd.SUMMARY, {"epochs": s.epochs, "test_acc_at_best": acc})
    return run_dir
