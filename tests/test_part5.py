"""Part 5's switches and the ablation and few-labels machinery (A5-A7), on real tensors."""
import torch
from torch import nn

from conftest import TINY
from engine.config import load
from engine.data import per_class_subset
from engine.train import Ema, logits

ABLATION = TINY + """
[ablation.ab]
base = "scratch"
mode = "MODE"
seeds = 2
components = { a = { cutout = 4 }, b = { label_smoothing = 0.1 }, c = { tta = true } }
"""


def test_ablation_modes_expand_to_the_right_configurations(tmp_path):
    path = tmp_path / "experiments.toml"
    expected = {
        "add_one": ["baseline", "+a", "+b", "+c"],
        "remove_one": ["baseline", "full", "full-a", "full-b", "full-c"],
        "all": ["baseline", "+a", "+b", "+c", "+a+b", "+a+c", "+b+c", "full"],
    }
    for mode, labels in expected.items():
        path.write_text(ABLATION.replace("MODE", mode))
        ab = load(path).ablations["ab"]
        configs = ab.configs()
        assert [label for label, _ in configs] == labels
        assert len(ab.points()) == 2 * len(labels)  # two seeds each
        overrides = dict(configs)
        assert overrides["baseline"] == []
        if "full-b" in overrides:
            assert overrides["full-b"] == ["cutout=4", "tta=true"]
    assert ab.points()[1] == ("baseline seed=1", "scratch", ["seed=1"])


def test_per_class_subset_exact_deterministic_nested():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    small, big = per_class_subset(labels, 5), per_class_subset(labels, 15)
    assert torch.bincount(labels[small]).tolist() == [5, 5, 5]
    assert torch.equal(small, per_class_subset(labels, 5))
    assert set(small.tolist()) <= set(big.tolist())
    assert torch.bincount(labels[per_class_subset(labels, 25)]).tolist() == [25, 25, 20]


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


def test_ema_run_checkpoints_the_averaged_weights(tiny_config):
    from conftest import engine
    from engine import rundir as rd

    engine("run", "scratch", "--set", "epochs=1", "--set", "ema=0.9", "--set", "tta=true",
           "--config", tiny_config, check=True)
    run = rd.list_runs(tiny_config.parent / "runs", "scratch")[0].path
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert "ema" in last and "n_averaged" in last["ema"]
    assert torch.equal(best["fc.weight"], last["ema"]["module.fc.weight"])
    assert not torch.equal(best["fc.weight"], last["model"]["fc.weight"])
