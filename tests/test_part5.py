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


MINI = TINY + """
[experiment.crot]
title = "cifarnet on rotations"
model = "cifarnet"
task = "rotation"
epochs = 2

[experiment.cbase]
title = "cifarnet plain"
model = "cifarnet"
augment = "none"
epochs = 2

[ablation.mini]
base = "cbase"
mode = "add_one"
seeds = 2
components = { smooth = { label_smoothing = 0.1 }, rotation = { init = "crot" } }
"""


async def test_tiny_ablation_from_the_app_end_to_end_with_rotation_pretraining(tmp_path):
    """Enter on the ablation in the app runs the pretraining its "rotation" component
    needs, then every configuration for every seed; the compare view shows the table and
    its bars; the CLI prints the same table, and a second launch reruns nothing."""
    import csv
    import io

    from conftest import engine
    from engine import rundir as rd
    from test_app import select_experiment, wait_compare, wait_until
    from tui.app import RotundaApp
    from tui.views import CompareView

    path = tmp_path / "experiments.toml"
    path.write_text(MINI)
    runs = tmp_path / "runs"
    app = RotundaApp(path, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 40)) as pilot:
        await select_experiment(pilot, app, "sweep:mini")
        assert "ablation" in [str(c) for c in app.query_one("#exp-table").get_row("sweep:mini")]
        await pilot.press("enter")

        def finished():
            points = rd.list_runs(runs, "mini")
            return len(points) == 6 and all(r.state in ("done", "failed") for r in points)
        await wait_until(pilot, finished, timeout=240)
        await pilot.press("4")
        while app.query_one(CompareView).selected() != "mini":
            await pilot.press("right_square_bracket")
        await wait_compare(pilot, app, "mini")
        plot = app.query_one("#compare-plot")
        await pilot.pause(0.3)
        assert plot.display
        drawn = str(plot.render())
        assert "baseline" in drawn and "+rotation" in drawn and "mean test accuracy" in drawn
    assert [r.state for r in rd.list_runs(runs, "crot")] == ["done"]
    points = rd.list_runs(runs, "mini")
    assert all(r.state == "done" for r in points)
    rotated = [r for r in points if "init: weights" in r.path.joinpath(rd.LOG).read_text()]
    assert len(rotated) == 2  # "+rotation" for both seeds, and only they
    table = engine("compare", "mini", "--format", "csv", "--config", path, check=True).stdout
    rows = {r["Configuration"]: r for r in csv.DictReader(io.StringIO(table))}
    assert list(rows) == ["baseline", "+smooth", "+rotation"]
    assert all(r["Seeds"] == "2/2" for r in rows.values())
    assert float(rows["baseline"]["Delta"] or 0) == 0
    for label in ("+smooth", "+rotation"):
        got = float(rows[label]["Mean acc"]) - float(rows["baseline"]["Mean acc"])
        assert abs(float(rows[label]["Delta"]) - got) < 1e-3
    again = engine("sweep", "mini", "--config", path, check=True).stdout
    assert again.count("already done") == 6 and "dependency" not in again
    assert len(rd.list_runs(runs, "mini")) == 6


FEW = TINY.replace("epochs = 4", "epochs = 1") + """
[sweep.few]
title = "Few labels"
base = ["ft", "scratch"]
axes = { per_class_train = [3, 9] }
plot = "per_class_train"
"""


async def test_few_labels_sweep_pretrains_first_and_plots_in_terminal_and_png(tmp_path):
    from conftest import engine
    from engine import rundir as rd
    from engine.analysis import curve
    from engine.config import load, tomllib
    from test_app import wait_compare
    from tui.app import RotundaApp
    from tui.views import CompareView

    path = tmp_path / "experiments.toml"
    path.write_text(FEW)
    out = engine("sweep", "few", "--config", path, check=True).stdout
    assert "running dependency rot first" in out
    runs = tmp_path / "runs"
    for r in rd.list_runs(runs, "few"):
        per_class = tomllib.loads((r.path / rd.CONFIG).read_text())["settings"]["per_class_train"]
        classes = len(rd.read_json(r.path / rd.SUMMARY)["classes"])
        assert f"; {per_class * classes} train," in (r.path / rd.LOG).read_text()
    axis, series = curve(load(path), "few", runs)
    assert axis == "per_class_train"
    assert {b: [x for x, _ in pts] for b, pts in series.items()} == {"ft": [3, 9],
                                                                   "scratch": [3, 9]}
    exported = engine("export", "few", "--config", path, check=True).stdout.split()
    png = next(p for p in exported if p.endswith("few-per_class_train.png"))
    assert open(png, "rb").read(4) == b"\x89PNG"
    app = RotundaApp(path, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("4")
        while app.query_one(CompareView).selected() != "few":
            await pilot.press("right_square_bracket")
        await wait_compare(pilot, app, "few")
        await pilot.pause(0.3)
        plot = app.query_one("#compare-plot")
        drawn = str(plot.render())
        assert plot.display and "per_class_train" in drawn and "scratch" in drawn


def test_cifarnet_starts_near_uniform_and_survives_a_large_learning_rate():
    """Part 5's net trained at its configured learning rate: the loss starts at ln(10),
    not far above it (unscaled max-pooled logits made SGD blow up to chance), and a few
    steps at lr 0.2 do not leave it above where it started."""
    import math

    from engine.models import build_model

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
