"""The task seam: every registered task builds, declares its settings, and answers what the
trainer asks; rotation's labels and prediction order on real tensors."""
import contextlib
import dataclasses

import pytest
import torch

from engine import tasks
from engine.core.errors import ConfigError
from engine.core.registry import TASKS
from engine.core.settings import Settings, apply_overrides
from engine.data.datasets import synthetic
from engine.data.splits import Normalizer
from engine.tasks.rotation import rotate_batch
from engine.train.step import optimise, trainable_model


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_builds_and_trains_a_step(name):
    """The registry's every task: its module exists, the model is built with its head (or
    Identity and the task's own modules), and one optimiser step on a real batch moves the
    weights, through the same functions a run uses."""
    s = dataclasses.replace(Settings(), task=name, model="resnet18_cifar", image_size=32,
                            batch_size=8, augment="none", knn_every=1, simclr_hidden=64,
                            moco_hidden=64, moco_queue=64, byol_hidden=64, dino_hidden=64,
                            dino_out_dim=64)
    task = tasks.build(s)
    data = synthetic(16, 8, 32)
    model, opt = trainable_model(s, task, len(data.classes), torch.device("cpu"))
    x, y = next(data.train.batches(8, torch.device("cpu")))
    x, y = task.train_views(x, y, torch.Generator().manual_seed(0))
    assert len(x) == task.images_per_step(8)
    norm = Normalizer(data.mean, data.std, torch.device("cpu"), False)
    before = [p.detach().clone() for p in model.parameters()]
    loss, out, target = optimise(lambda x, y: task.forward(model, x, y), opt, norm(x), y,
                                 contextlib.nullcontext())
    task.after_step(model, 0, 10)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if out is not None:
        assert out.shape == (len(target), task.outputs(len(data.classes)) or out.shape[1])
    state = task.state_dict()  # what last.pt keeps for a resume, and takes back
    assert {f"part{i}" for i in range(len(task.parts))} <= state.keys()
    task.load_state_dict(state)


def test_task_options_are_settings_validated_like_any_other():
    s = apply_overrides(Settings(), ["task=rotation", "rotation_mode=random"])
    assert s.rotation_mode == "random" and tasks.build(s).images_per_step(32) == 32
    assert tasks.build(dataclasses.replace(s, rotation_mode="all4")).images_per_step(32) == 128
    with pytest.raises(ConfigError, match="rotation_mode = 'sideways' is not one of all4, "
                                          "random"):
        apply_overrides(Settings(), ["rotation_mode=sideways"])


def test_rotation_labels_unrotate_to_the_original():
    x = synthetic(16, 8, 32).train.x
    gen = torch.Generator().manual_seed(3)
    for mode in ("random", "all4"):
        xr, k = rotate_batch(x, mode, gen)
        src = x.repeat(4, 1, 1, 1) if mode == "all4" else x
        assert len(xr) == len(k) == len(src)
        for img, label, orig in zip(xr, k, src):
            assert torch.equal(torch.rot90(img, -int(label), dims=(1, 2)), orig)
    _, k = rotate_batch(x, "all4")
    assert torch.bincount(k).tolist() == [16] * 4


def test_rotation_eval_scores_each_image_in_four_turns_in_id_order():
    task = tasks.build(dataclasses.replace(Settings(), task="rotation"))
    x = torch.arange(3 * 1 * 2 * 2, dtype=torch.uint8).view(3, 1, 2, 2)
    xv, yv = task.eval_views(x, torch.zeros(3, dtype=torch.long))
    assert yv.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # [k][image]
    ids = task.prediction_order(torch.arange(12))  # predictions.csv: id = 4 * image + k
    assert ids.tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]


def test_summary_reports_the_epoch_the_best_metric_picks():
    task = tasks.build(Settings())
    epochs = [{"epoch": e, "test_loss": loss, "test_acc": acc, "train_acc": 0.5}
              for e, loss, acc in [(1, 1.0, 0.5), (2, 0.7, 0.6), (3, 0.7, 0.9), (4, 0.9, 0.8)]]
    summary = task.summary(epochs)
    assert summary["best_epoch"] == 2  # lowest test loss; the first of equals
    assert summary["test_acc_at_best"] == 0.6 and summary["best_test_acc"] == 0.9
    assert summary["final_test_acc"] == 0.8


def test_knn_temperature_must_be_positive():
    with pytest.raises(ConfigError, match="knn_t is the k-NN vote's temperature, above 0"):
        apply_overrides(Settings(), ["knn_t=0"])


def test_throughput_of_a_feature_training_task_times_a_classifier_head(tmp_path):
    from engine.measure.throughput import run_throughput

    s = dataclasses.replace(Settings(), task="simclr", dataset="synthetic", image_size=16,
                            device="cpu", knn_every=1)
    table, _ = run_throughput(s, "simclr", tmp_path, max_batch=2, steps=1, warmup=0)
    assert [r[0] for r in table.rows] == [1, 2] and table.rows[1][1] > 0
