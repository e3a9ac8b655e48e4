"""Datasets, subsets and batch augmentation, on real tensors and files the tests write."""
import pickle

import pytest
import torch
from makers import write_cifar, write_folder, write_h5

from engine.core.errors import DataError
from engine.core.settings import Settings
from engine.data.augment import crop_flip
from engine.data.datasets import load_dataset, per_class_subset, stratified_subset
from engine.data.sources import load_cifar10, load_imagefolder
from engine.data.splits import Normalizer
from engine.measure.bench import conventional_dataset


def test_crop_is_a_shifted_window_and_flip_mirrors():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = crop_flip(x, gen, crop=True, flip=False, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for o, p in zip(out, padded):
        windows = [p[:, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(o, w) for w in windows)
    flipped = crop_flip(x, gen, crop=False, flip=True)
    same = [torch.equal(f, o) for f, o in zip(flipped, x)]
    mirrored = [torch.equal(f, o.flip(2)) for f, o in zip(flipped, x)]
    assert all(a or b for a, b in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54  # about half


def test_cutout_zeroes_one_patch_per_image():
    from engine.data.augment import cutout

    x = torch.full((16, 3, 12, 12), 200, dtype=torch.uint8)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1)  # per pixel, all channels
    for z in zeros:
        n = int(z.sum())
        assert 4 <= n <= 16  # a 4x4 patch, clipped where it crosses a border
        rows, cols = z.nonzero(as_tuple=True)
        assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4
    assert ((out == 0) | (out == 200)).all()


def test_stratified_subset_is_proportional_and_deterministic():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    a = stratified_subset(labels, 100)
    assert torch.equal(a, stratified_subset(labels, 100))
    assert torch.bincount(labels[a]).tolist() == [50, 30, 20]
    assert len(set(a.tolist())) == 100
    assert len(stratified_subset(labels, 7)) == 7
    assert len(stratified_subset(labels, 5000)) == 1000


def test_cifar10_batches_layout(tmp_path):
    d = write_cifar(tmp_path)
    data = load_cifar10(tmp_path, download=False, size=32)
    assert data.train.x.shape == (100, 3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.test.x.shape == (10, 3, 32, 32) and len(data.classes) == 10
    with open(d / "test_batch", "rb") as f:
        raw = pickle.load(f)
    assert torch.equal(data.test.x[3].reshape(-1), torch.from_numpy(raw[b"data"][3]))
    resized = load_cifar10(tmp_path, download=False, size=48)
    assert resized.train.x.shape == (100, 3, 48, 48)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    d = write_cifar(tmp_path)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_cifar10(tmp_path, download=False, size=32)


def test_missing_cifar_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "nothing", download=False, size=32)
    msg = str(err.value)
    assert str(tmp_path / "nothing") in msg and "cifar-10-batches-py/" in msg
    assert "python -m engine run demo" in msg


def test_imagefolder_any_classes_any_size_resized_and_cached(tmp_path):
    write_folder(tmp_path)
    data = load_imagefolder(tmp_path, size=24)
    assert data.classes == ("cat", "dog", "emu")
    assert data.train.x.shape == (12, 3, 24, 24)
    assert data.train.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    cached = sorted(p.name for p in (tmp_path / ".rotunda-cache").glob("*.npy"))
    assert len(cached) == 4
    again = load_imagefolder(tmp_path, size=24)
    assert torch.equal(again.train.x, data.train.x)
    # cifar10 also accepts the image-folder layout (the JPEG copy of CIFAR-10)
    s = Settings(dataset="cifar10", data_dir=str(tmp_path), image_size=24, limit_train=6)
    sub = load_dataset(s)
    assert torch.bincount(sub.train.y).tolist() == [2, 2, 2]


@pytest.mark.parametrize("hwc", [False, True], ids=["NCHW", "NHWC"])
def test_hdf5_reads_in_chunks_and_covers_every_image_once(tmp_path, hwc):
    import h5py

    from engine.data.sources import load_hdf5
    from engine.data.splits import HDF5Split

    path = write_h5(tmp_path / "medium.hdf5", hwc=hwc)
    data = load_hdf5(path, 12)
    assert (len(data.train), len(data.test), len(data.predict)) == (48, 24, 13)
    assert data.classes == ("0", "1", "2", "3") and data.predict.labels() is None
    HDF5Split.CHUNK, HDF5Split.BUFFER_CHUNKS = 5, 2  # many chunks, a small shuffle buffer
    try:
        seen = torch.cat([x for x, _ in data.train.batches(8, torch.device("cpu"), seed=3)])
        ordered = torch.cat([x for x, _ in data.train.batches(7, torch.device("cpu"))])
    finally:
        HDF5Split.CHUNK, HDF5Split.BUFFER_CHUNKS = 2048, 4
    with h5py.File(path) as f:
        raw = torch.from_numpy(f["images-train"][:])
    raw = raw.permute(0, 3, 1, 2) if hwc else raw
    assert torch.equal(ordered, raw)  # in order, nothing lost, no ragged batch dropped
    assert seen.shape == raw.shape and not torch.equal(seen, raw)  # shuffled
    as_rows = {bytes(r.numpy()) for r in seen}
    assert as_rows == {bytes(r.numpy()) for r in raw}
    half = data.train.subset(torch.tensor([1, 3, 40]))
    assert torch.equal(next(half.batches(3, torch.device("cpu")))[0], raw[[1, 3, 40]])
    resized = load_hdf5(path, 16)
    assert next(resized.test.batches(4, torch.device("cpu")))[0].shape == (4, 3, 16, 16)


def test_conventional_pipeline_sees_the_engines_pixels(tmp_path):
    """Without augmentation, the torchvision ImageFolder + PIL + ToTensor + Normalize item
    equals the engine's normalised uint8 image: both paths train on the same inputs."""
    write_folder(tmp_path, size=(16, 16))
    s = Settings(dataset="cifar10", data_dir=str(tmp_path), image_size=16, augment="none",
                 device="cpu")
    data = load_dataset(s)
    ds, how = conventional_dataset(s, data, data.mean, data.std)
    assert how.startswith("ImageFolder") and len(ds) == len(data.train)
    norm = Normalizer(data.mean, data.std, torch.device("cpu"), False)
    for i in (0, 5, 11):
        x, y = ds[i]
        assert y == int(data.train.y[i])
        assert torch.allclose(x, norm(data.train.x[i:i + 1])[0], atol=1e-5)

    write_cifar(tmp_path / "pickles")
    s = Settings(dataset="cifar10", data_dir=str(tmp_path / "pickles"), augment="none")
    data = load_dataset(s)
    ds, how = conventional_dataset(s, data, data.mean, data.std)
    norm = Normalizer(data.mean, data.std, torch.device("cpu"), False)
    x, y = ds[7]
    assert y == int(data.train.y[7])
    assert torch.allclose(x, norm(data.train.x[7:8])[0], atol=1e-5)


def test_per_class_subset_exact_deterministic_nested():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    small, big = per_class_subset(labels, 5), per_class_subset(labels, 15)
    assert torch.bincount(labels[small]).tolist() == [5, 5, 5]
    assert torch.equal(small, per_class_subset(labels, 5))
    assert set(small.tolist()) <= set(big.tolist())
    assert torch.bincount(labels[per_class_subset(labels, 25)]).tolist() == [25, 25, 20]
