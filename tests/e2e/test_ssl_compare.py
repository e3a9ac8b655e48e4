"""A self-supervised method end to end on the synthetic data: SimCLR pretrains with the
k-NN monitor and the collapse watch, ends with a linear probe, is fine-tuned with few
labels by a sweep (which pretrains first), and the ssl comparison puts it all in one row
beside the published reference."""
import csv
import io

from conftest import TINY, engine, write_lab

from engine.core import rundir as rd

SSL = TINY.replace("epochs = 4", "epochs = 2") + """
[experiment.ssl_simclr]
task = "simclr"
augment = "none"
knn_every = 1
knn_k = 20
linear_probe_epochs = 20
synthetic_train = 640
simclr_hidden = 256
reference = { value = 0.9074, source = "solo-learn (SimCLR)" }

[experiment.ssl_simclr_ft]
init = "ssl_simclr"
epochs = 1

[sweep.ssl_finetune]
base = "ssl_simclr_ft"
axes = { label_fraction = [0.1, 0.5] }

[compare.ssl]
kind = "ssl"
experiments = ["ssl_simclr"]
finetune = "ssl_finetune"
"""


def test_simclr_pretrains_is_probed_fine_tuned_and_compared(tmp_path):
    cfg = write_lab(tmp_path, SSL)
    out = engine("sweep", "ssl_finetune", "--config", cfg, check=True).stdout
    assert "running dependency ssl_simclr first" in out
    runs = tmp_path / "runs"
    pre = rd.latest_done(runs, "ssl_simclr")
    epochs = [m for m in rd.read_jsonl(pre.path / rd.METRICS) if m["kind"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2]
    for m in epochs:
        assert 0 <= m["knn_acc"] <= 1 and m["spread"] > 0.05  # not collapsed
        assert m["test_loss"] is None and m["train_acc"] is None  # no labels used
    assert epochs[-1]["knn_acc"] > 0.2  # chance: 0.10
    s = pre.summary
    assert s["best_knn_acc"] == max(m["knn_acc"] for m in epochs)
    assert s["best_epoch"] == max(epochs, key=lambda m: m["knn_acc"])["epoch"]
    assert 0.1 < s["linear_acc"] <= 1 and s["headline"] == "knn_acc"
    assert "collapsed" not in pre.status
    points = rd.runs_by_point(runs, "ssl_finetune")
    assert sorted(points) == ["label_fraction=0.1", "label_fraction=0.5"]
    small = points["label_fraction=0.1"][0]
    assert "; 32 train," in (small.path / rd.LOG).read_text()  # 10% of 320, stratified
    table = engine("compare", "ssl", "--format", "csv", "--config", cfg, check=True).stdout
    row = next(csv.DictReader(io.StringIO(table)))
    assert row["Method"] == "ssl_simclr" and row["Task"] == "simclr"
    assert float(row["k-NN"]) == round(s["best_knn_acc"], 6)
    assert float(row["Linear"]) == round(s["linear_acc"], 6)
    for frac, label in (("10", "label_fraction=0.1"), ("50", "label_fraction=0.5")):
        ft = points[label][0].summary["test_acc_at_best"]
        assert float(row[f"{frac}% labels"]) == round(ft, 6)
    assert float(row["Reference"]) == 0.9074 and row["Run"] == pre.run_id


def test_the_rotation_pretext_is_evaluated_like_the_others(tiny_config):
    """Any task can run the k-NN monitor and the linear probe: the rotation pretext keeps
    its own test loss and accuracy (on rotations) and gains the same k-NN and linear
    figures as the self-supervised methods."""
    engine("run", "rot", "--set", "epochs=2", "--set", "knn_every=2", "--set", "knn_k=20",
           "--set", "linear_probe_epochs=20", "--config", tiny_config, check=True)
    run = rd.latest_done(tiny_config.parent / "runs", "rot")
    epochs = [m for m in rd.read_jsonl(run.path / rd.METRICS) if m["kind"] == "epoch"]
    assert "knn_acc" not in epochs[0] and 0 < epochs[1]["knn_acc"] <= 1  # every 2nd, last
    assert all(m["test_acc"] is not None for m in epochs)
    probes = [m for m in rd.read_jsonl(run.path / rd.METRICS) if m["kind"] == "probe"]
    assert len(probes) == 1 and probes[0]["epoch"] == run.summary["best_epoch"]
    assert run.summary["linear_acc"] == probes[0]["linear_acc"]
    assert run.summary["final_knn_acc"] == epochs[1]["knn_acc"]
