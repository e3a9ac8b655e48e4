"""The pieces of a transfer study that need no weights: the validation split held out of
train, the seed's multistep schedule, and the transfer table's winner."""
import pytest
import torch
from conftest import write_lab
from makers import write_run

from engine.core.config import load
from engine.core.errors import DataError
from engine.data.datasets import hold_out, load_dataset
from engine.data.splits import TensorSplit
from engine.report.compare import compare_table
from engine.train.optim import lr_factor


def test_hold_out_is_stratified_disjoint_and_fixed():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 2, 2)
    train, val = hold_out(TensorSplit(x.contiguous(), y), 0.2)
    assert len(val) == 20 and len(train) == 80
    assert torch.bincount(val.y).tolist() == [10, 6, 4]  # each class in proportion
    assert not set(train.x[:, 0, 0, 0].tolist()) & set(val.x[:, 0, 0, 0].tolist())
    again = hold_out(TensorSplit(x.contiguous(), y), 0.2)[1]
    assert torch.equal(again.x, val.x)
    with pytest.raises(DataError):
        hold_out(TensorSplit(x[:1].contiguous(), y[:1]), 0.5)


def write(tmp_path, body):
    return load(write_lab(tmp_path, '[defaults]\ndataset = "synthetic"\ndevice = "cpu"\n' + body))


def test_validation_split_comes_out_of_train_before_label_fraction(tmp_path):
    config = write(tmp_path, "[experiment.a]\nsynthetic_train = 200\nsynthetic_test = 40\n"
                             "train_val_split = 0.25\nlabel_fraction = 0.5\n")
    data = load_dataset(config.experiments["a"].settings)
    assert (len(data.val), len(data.train), len(data.test)) == (50, 75, 40)


def test_seed_004_schedule_three_drops_by_ten(tmp_path):
    config = write(tmp_path, '[experiment.a]\nepochs = 200\nlr = 0.001\nschedule = "multistep"\n'
                             'milestones = [60, 120, 180]\nwarmup_epochs = 0\n')
    s = config.experiments["a"].settings
    rates = [s.lr * lr_factor(s, epoch * 10, 10) for epoch in (0, 59, 60, 119, 120, 180, 199)]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-6, 1e-6])


def test_transfer_table_names_the_winner_by_validation(tmp_path):
    config = write(tmp_path, """
[experiment.ft]
model = "resnet18"
init = { pretrained = "IMAGENET1K_V1" }
train_val_split = 0.2
reference = { value = 0.8, source = "a seed", wall_s = 100 }
[experiment.probe]
model = "resnet18"
init = { pretrained = "IMAGENET1K_V1" }
train_layers = ["fc"]
train_val_split = 0.2
[sweep.probe_lr]
base = "probe"
axes = { lr = [1.0, 0.01] }
[compare.t]
kind = "transfer"
experiments = ["ft"]
sweeps = ["probe_lr"]
""")
    runs = config.runs_dir()
    write_run(runs, "ft", "20260101-000000-aaaa", status={"experiment": "ft"},
              summary={"val_acc_at_best": 0.70, "test_acc_at_best": 0.90, "best_test_acc": 0.91})
    write_run(runs, "probe_lr", "20260101-000001-bbbb", status={"experiment": "probe_lr"},
              summary={"val_acc_at_best": 0.75, "test_acc_at_best": 0.60},
              config={"run": {"sweep": "probe_lr", "point": "lr=1.0"}})
    table = compare_table(config, "t", runs)
    assert [r[0] for r in table.rows] == ["fine-tune", "feature extractor",
                                          "feature extractor"]
    assert [r[2] for r in table.rows] == ["0.1", "1", "0.01"]
    assert table.rows[0][9:11] == [0.8, 100.0]
    winner = next(n for n in table.notes if n.startswith("Winner"))
    # picked on validation (75%), although the fine-tune's test figure is higher
    assert "feature extractor at lr 1 " in winner and "validation 75.00%" in winner
    assert table.rows[2][-1] == "no successful run"
