"""The model zoo, freezing and initialisation, on real models."""
import pytest
import torch
from torch import nn

from engine.core.errors import InitError
from engine.measure.throughput import sweep_batches
from engine.models.zoo import (
    build_model,
    count_params,
    freeze_except,
    load_init,
    train_mode,
)
from engine.train.optim import Ema
from engine.train.step import logits


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


def test_tta_averages_the_output_for_the_image_and_its_mirror():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        plain, tta = logits(model, x, False), logits(model, x, True)
        assert torch.allclose(tta, (model(x) + model(x.flip(3))) / 2)
        assert not torch.allclose(plain, tta)


def test_ema_weights_differ_from_the_raw_ones_trail_them_and_warm_up():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    ema = Ema(model, 0.999)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    start = model.weight.detach().clone()
    for step in range(8):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model, step)
    raw, avg = model.weight.detach(), ema.module.weight.detach()
    assert not torch.allclose(raw, avg)
    moved, ran = (avg - start).norm(), (raw - start).norm()
    assert moved < ran  # the average lags behind the raw weights
    # ... but with the warm-up it has left the initialisation: a fixed 0.999 would have
    # moved it by well under 1% of the raw weights' distance in 8 steps.
    assert moved > 0.2 * ran
    assert ema.now == min(0.999, 8 / 17)


def test_cifarnet_starts_near_uniform_and_survives_a_large_learning_rate():
    """Part 5's net trained at its configured learning rate: the loss starts at ln(10),
    not far above it (unscaled max-pooled logits made SGD blow up to chance), and a few
    steps at lr 0.2 do not leave it above where it started."""
    import math

    from engine.models.zoo import build_model

    torch.manual_seed(0)
    model = build_model("cifarnet", 10)
    x, y = torch.randn(64, 3, 32, 32), torch.arange(64) % 10
    first = torch.nn.functional.cross_entropy(model(x), y).item()
    assert abs(first - math.log(10)) < 0.1
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
