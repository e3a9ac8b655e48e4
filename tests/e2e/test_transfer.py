"""ImageNet transfer end to end on CPU, without network: weights made by the test under
torchvision's file name in TORCH_HOME, an image-folder dataset with uneven classes, a
feature-extractor run that trains exactly the new head, and the fine-tune and probe
learning-rate sweeps with the table that names the winner."""
import json

import numpy as np
import torch
import torchvision
from conftest import engine
from PIL import Image

from engine.core import rundir as rd
from engine.core.config import load
from engine.report.compare import compare_table

CLASSES = {"ant": 12, "bee": 7, "wasp": 4}  # uneven on purpose

CONFIG = """
[defaults]
dataset = "imagefolder"
data_dir = "folder"
image_size = 16
input_size = 32
model = "resnet18"
init = { pretrained = "IMAGENET1K_V1" }
train_val_split = 0.25
epochs = 2
batch_size = 4
optimizer = "sgd"
momentum = 0.9
weight_decay = 0.0
schedule = "multistep"
milestones = [1]
warmup_epochs = 0
augment = "none"
log_every = 1
device = "cpu"
amp = false

[experiment.finetune]
lr = 0.01

[experiment.probe]
train_layers = ["fc"]
lr = 0.1

[sweep.finetune_lr]
base = "finetune"
axes = { lr = [0.01, 0.001] }

[sweep.probe_lr]
base = "probe"
axes = { lr = [0.1, 0.01] }

[compare.transfer]
kind = "transfer"
sweeps = ["finetune_lr", "probe_lr"]
"""


def write_folder(root):
    """Colour-coded classes (learnable), uneven counts, a few sizes."""
    rng = np.random.default_rng(0)
    colours = {"ant": (200, 40, 40), "bee": (40, 200, 40), "wasp": (40, 40, 200)}
    for split, scale in (("train", 1), ("test", 0)):
        for cls, n in CLASSES.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n if scale else 3):
                size = (20 + 4 * (i % 3), 18)
                arr = rng.normal(colours[cls], 30, (size[1], size[0], 3)).clip(0, 255)
                Image.fromarray(arr.astype(np.uint8)).save(root / split / cls / f"{i}.png")


def setup(tmp_path):
    write_folder(tmp_path / "folder")
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, cache / "resnet18-f37072fd.pth")
    (tmp_path / "experiments.toml").write_text(CONFIG)
    return state


def test_probe_trains_exactly_the_head(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    state = setup(tmp_path)
    engine("run", "probe", "--config", tmp_path / "experiments.toml", cwd=tmp_path, check=True)
    run = rd.latest_done(tmp_path / "runs", "probe").path
    log = (run / rd.LOG).read_text()
    assert "17 train, 6 validation, 9 test, 3 classes" in log
    assert "input: 32px (stored 16px" in log and "IMAGENET1K_V1's mean/std" in log
    summary = rd.read_json(run / rd.SUMMARY)
    assert summary["params_trainable"] == 512 * 3 + 3
    assert summary["best_means"] == "lowest validation loss"
    assert {"val_acc_at_best", "best_val_loss", "test_acc_at_best"} <= set(summary)
    epochs = [m for m in rd.read_jsonl(run / rd.METRICS) if m["kind"] == "epoch"]
    assert all(m["val_loss"] is not None and m["test_loss"] is not None for m in epochs)
    assert [m["lr"] for m in epochs] == [0.1, 0.1 * 0.1]
    trained = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    for key, value in state.items():  # every backbone tensor, BatchNorm statistics too
        if not key.startswith("fc."):
            assert torch.equal(trained[key], value), key
    assert trained["fc.weight"].shape == (3, 512)


def test_finetune_and_probe_sweeps_name_a_winner(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    setup(tmp_path)
    cfg = tmp_path / "experiments.toml"
    for sweep in ("finetune_lr", "probe_lr"):
        engine("sweep", sweep, "--config", cfg, "--quiet", cwd=tmp_path, check=True)
    config = load(cfg)
    table = compare_table(config, "transfer", config.runs_dir())
    assert [(r[0], r[2]) for r in table.rows] == [
        ("fine-tune", "0.01"), ("fine-tune", "0.001"),
        ("feature extractor", "0.1"), ("feature extractor", "0.01")]
    assert all(r[3] is not None and r[4] is not None for r in table.rows)
    best = max(table.rows, key=lambda r: r[3])
    winner = next(n for n in table.notes if n.startswith("Winner"))
    assert f"{best[0]} at lr {best[2]} " in winner
    out = engine("compare", "transfer", "--config", cfg, cwd=tmp_path, check=True).stdout
    assert "Winner:" in out and "feature extractor" in out
    finetune = rd.latest_done(config.runs_dir(), "finetune_lr")
    assert rd.read_json(finetune.path / rd.SUMMARY)["params_trainable"] > 11_000_000
    assert json.loads(json.dumps(table.rows))  # plain values, exportable


async def test_app_says_where_the_weights_go_before_launch(tmp_path, monkeypatch):
    """Not cached: the Starts-from cell says so and the detail names the file and the
    folder, the same line a run would fail with; once the file is there, (cached)."""
    from test_app import select_experiment

    from engine.core import hub
    from tui.app import RotundaApp

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    (tmp_path / "experiments.toml").write_text(CONFIG)
    app = RotundaApp(tmp_path / "experiments.toml", gpu=False, poll_s=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.5)
        table = app.query_one("#exp-table")
        await select_experiment(pilot, app, "probe")
        await pilot.pause(0.3)
        assert "IMAGENET1K_V1 (not cached)" in str(table.get_row("probe")[5])
        detail = str(app.query_one("#exp-detail").render())
        pub = hub.published("resnet18", "IMAGENET1K_V1")
        assert pub.missing_line("a run downloads them only where there is network")[:60] \
            in detail.replace("\n", "")
        pub.cached.parent.mkdir(parents=True)
        torch.save(torchvision.models.resnet18().state_dict(), pub.cached)
        await pilot.press("R")  # reload: the cell is computed again
        await pilot.pause(0.5)
        assert "IMAGENET1K_V1 (cached)" in str(table.get_row("probe")[5])
