"""Datasets, batches, rotation labels, freezing and initialisation, on real tensors and files."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from engine.augment import crop_flip
from engine.data import load_dataset, stratified_subset
from engine.errors import DataError, InitError
from engine.models import build_model, count_params, freeze_except, load_init, train_mode
from engine.settings import Settings
from engine.sources import load_cifar10, load_imagefolder


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


def test_stratified_subset_is_proportional_and_deterministic():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    a = stratified_subset(labels, 100)
    assert torch.equal(a, stratified_subset(labels, 100))
    assert torch.bincount(labels[a]).tolist() == [50, 30, 20]
    assert len(set(a.tolist())) == 100
    assert len(stratified_subset(labels, 7)) == 7
    assert len(stratified_subset(labels, 5000)) == 1000


def _write_cifar(root, n_train=20, n_test=10):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n).tolist())}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


def test_cifar10_batches_layout(tmp_path):
    d = _write_cifar(tmp_path)
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
    d = _write_cifar(tmp_path)
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


def _write_folder(root, classes=("cat", "dog", "emu"), per_class=4, size=(40, 30)):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")


def test_imagefolder_any_classes_any_size_resized_and_cached(tmp_path):
    _write_folder(tmp_path)
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


def test_part2_trains_exactly_layer4_and_fc():
    model = build_model("resnet18", 10)
    freeze_except(model, ("layer4", "fc"))
    total, trainable = count_params(model)
    assert trainable == 8_398_858
    assert total == 11_181_642
    freeze_except(model, ("fc",))
    assert count_params(model)[1] == 5130


def test_frozen_batchnorm_statistics_stay_untouched():
    model = build_model("resnet18", 10)
    freeze_except(model, ("layer4", "fc"))
    before = model.layer1[0].bn1.running_mean.clone()
    before4 = model.layer4[0].bn1.running_mean.clone()
    train_mode(model, ("layer4", "fc"))
    model(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert torch.equal(model.layer1[0].bn1.running_mean, before)
    assert not torch.equal(model.layer4[0].bn1.running_mean, before4)


def test_init_loads_backbone_and_leaves_a_new_head(tmp_path):
    src = build_model("resnet18", 4)
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "best.pt")
    dst = build_model("resnet18", 10)
    skipped = load_init(dst, "resnet18", tmp_path / "best.pt")
    assert skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert torch.equal(dst.bn1.running_var, src.bn1.running_var)
    assert dst.fc.weight.shape == (10, 512)
    other = build_model("resnet18_cifar", 10)
    with pytest.raises(InitError, match="does not fit this model"):
        load_init(other, "resnet18_cifar", tmp_path / "best.pt")
