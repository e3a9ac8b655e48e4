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
    assert points[0] == ("lr=0.001 batch_size=32", ["lr=0.001", "batch_size=32"])
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
