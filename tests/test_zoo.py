"""Model zoo, sweeps and the throughput sweep (seed 001), on real models and runs."""
import csv
import io
import json

import pytest
import torch
from torch import nn

from conftest import TINY, engine
from engine.config import ConfigError, load
from engine.models import build_model, count_params
from engine.throughput import sweep_batches


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def linear(cin, cout):
    return cin * cout + cout


def test_alexnet_matches_the_seed_layer_table():
    model = build_model("alexnet", 10, 70)
    assert model(torch.randn(2, 3, 70, 70)).shape == (2, 10)
    by_hand = (conv(3, 64, 11) + conv(64, 192, 5) + conv(192, 384, 3) + conv(384, 256, 3)
               + conv(256, 256, 3) + linear(256 * 6 * 6, 4096) + linear(4096, 4096)
               + linear(4096, 10))
    assert count_params(model) == (by_hand, by_hand) == (57_044_810, 57_044_810)
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(acts) == 7  # after each of 5 convolutions and 2 hidden linear layers
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.5, 0.5]


def test_lenet_count_and_shapes():
    model = build_model("lenet", 10, 32)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    by_hand = (conv(3, 6, 5) + conv(6, 16, 5) + linear(16 * 5 * 5, 120) + linear(120, 84)
               + linear(84, 10))
    assert count_params(model)[0] == by_hand == 62_006
    assert build_model("lenet", 10, 64)(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_activation_switch_replaces_every_relu():
    model = build_model("resnet18", 10, activation="silu")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) == 9
    alex = build_model("alexnet", 10, 70, activation="gelu", dropout=0.2)
    assert sum(isinstance(m, nn.GELU) for m in alex.modules()) == 7
    assert [m.p for m in alex.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]


SWEEP = TINY + """
[sweep.lrs]
title = "Tiny lr sweep"
base = "scratch"
axes = { lr = [0.001, 0.003], batch_size = [32, 50, 64] }
"""


def test_sweep_expands_to_the_product_of_its_axes(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(SWEEP)
    sweep = load(path).sweeps["lrs"]
    points = sweep.points()
    assert len(points) == 6
    assert points[0] == ("lr=0.001 batch_size=32", "scratch", ["lr=0.001", "batch_size=32"])
    assert points[-1][0] == "lr=0.003 batch_size=64"
    for bad, message in [
        ('axes = { lr = ["fast"] }', "lr must be a number, got 'fast'"),
        ('axes = { lrr = [0.1] }', "unknown key 'lrr' (did you mean \"lr\"?)"),
        ('axes = { lr = [] }', "axes.lr must be a non-empty list"),
    ]:
        path.write_text(SWEEP.replace('axes = { lr = [0.001, 0.003], batch_size = [32, 50, 64] }',
                                      bad))
        with pytest.raises(ConfigError) as err:
            load(path)
        assert message in str(err.value) and "[sweep.lrs]" in str(err.value)
        assert str(err.value).startswith(f"{path}:")


def test_tiny_sweep_end_to_end_table_and_skips_done_points(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(TINY + """
[sweep.aug]
title = "Tiny augmentation sweep"
base = "scratch"
axes = { augment = ["none", "crop_flip"] }
""")
    first = engine("sweep", "aug", "--set", "epochs=1", "--config", path, "--quiet", check=True)
    assert first.returncode == 0
    out = engine("compare", "aug", "--format", "csv", "--config", path, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["Point"] for r in rows] == ["augment=none", "augment=crop_flip"]
    assert all(0 < float(r["Acc@best"]) <= 1 and r["State"] == "done" for r in rows)
    runs = sorted((tmp_path / "runs" / "aug").iterdir())
    assert len(runs) == 2
    again = engine("sweep", "aug", "--set", "epochs=1", "--config", path, check=True).stdout
    assert again.count("already done") == 2
    assert len(list((tmp_path / "runs" / "aug").iterdir())) == 2
    exported = engine("export", "aug", "--config", path, check=True).stdout.split()
    assert any(p.endswith("aug-curves.png") for p in exported)


class OomAbove(nn.Module):
    """A real model that raises CUDA's out-of-memory error from a given batch size."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        if x.shape[0] >= self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.fc(x.flatten(1))


def test_throughput_stops_at_out_of_memory():
    rows, largest, why = sweep_batches(lambda: OomAbove(16), 8, 10, torch.device("cpu"),
                                       max_batch=1024, steps=2, warmup=1)
    assert [r["batch"] for r in rows] == [1, 2, 4, 8, 16]
    assert largest == 8 and why == "out of memory at batch 16"
    assert rows[-1]["note"] == "out of memory" and rows[-1]["images_per_s"] is None
    assert all(r["images_per_s"] > 0 for r in rows[:-1])
    rows, largest, why = sweep_batches(lambda: OomAbove(10**9), 8, 10, torch.device("cpu"),
                                       max_batch=4, steps=1, warmup=0)
    assert largest == 4 and why == "reached the cap of 4"


def test_throughput_cli_writes_table_plot_json(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(TINY.replace('[experiment.scratch]', '[experiment.scratch]\nmodel = "lenet"'))
    engine("throughput", "scratch", "--max-batch", "8", "--steps", "2", "--warmup", "1",
           "--config", path, check=True)
    reports = tmp_path / "reports"
    result = json.loads((reports / "throughput-scratch.json").read_text())
    assert result["largest_batch"] == 8 and result["stopped"] == "reached the cap of 8"
    assert "largest batch that fits: 8" in (reports / "throughput-scratch.md").read_text()
    assert (reports / "throughput-scratch.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(reports / "throughput-scratch.csv")))
    assert [int(r["Batch"]) for r in rows] == [1, 2, 4, 8]


def _write_h5(path, n_train=48, n_val=24, n_test=13, size=12, hwc=False):
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


@pytest.mark.parametrize("hwc", [False, True], ids=["NCHW", "NHWC"])
def test_hdf5_reads_in_chunks_and_covers_every_image_once(tmp_path, hwc):
    import h5py

    from engine.sources import load_hdf5
    from engine.splits import HDF5Split

    path = _write_h5(tmp_path / "medium.hdf5", hwc=hwc)
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


def test_hdf5_run_writes_submission_for_the_unlabelled_split(tmp_path):
    _write_h5(tmp_path / "medium.hdf5")
    path = tmp_path / "experiments.toml"
    path.write_text(TINY.replace('[experiment.scratch]', '[experiment.scratch]\n'
                                 'dataset = "hdf5"\ndata_dir = "medium.hdf5"\n'
                                 'batch_size = 16\nmodel = "lenet"'))
    engine("run", "scratch", "--set", "epochs=2", "--config", path, check=True)
    run = next((tmp_path / "runs" / "scratch").iterdir())
    rows = list(csv.reader(open(run / "submission.csv")))
    assert rows[0] == ["id", "label"] and len(rows) == 14
    assert [int(r[0]) for r in rows[1:]] == list(range(13))
    assert {int(r[1]) for r in rows[1:]} <= {0, 1, 2, 3}
    assert len(list(csv.reader(open(run / "predictions.csv")))) == 25  # the labelled val split
    bad = engine("run", "scratch", "--set", "data_dir='nothing.h5'", "--config", path)
    assert bad.returncode == 1 and "HDF5 file" in bad.stderr and "not found" in bad.stderr


def test_cutout_zeroes_one_patch_per_image():
    from engine.augment import cutout

    x = torch.full((16, 3, 12, 12), 200, dtype=torch.uint8)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1)  # per pixel, all channels
    for z in zeros:
        n = int(z.sum())
        assert 4 <= n <= 16  # a 4x4 patch, clipped where it crosses a border
        rows, cols = z.nonzero(as_tuple=True)
        assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4
    assert ((out == 0) | (out == 200)).all()


def test_gallery_shows_true_and_predicted_labels(trained):
    run = next((trained.parent / "runs" / "ft").iterdir())
    out = engine("gallery", run, "--width", "100", "--config", trained, check=True).stdout
    assert "correct (bold: true label; below: predicted)" in out
    assert out.count("▀") >= 20 * 16 * 8
    right = int(out.split(" correct")[0].split()[-1].split("/")[0])
    assert 0 <= right <= 20 and "/20 correct" in out
    assert (run / "gallery.png").read_bytes()[:4] == b"\x89PNG"
