"""Sweeps expand into the product of their axes."""
import pytest
from conftest import TINY, write_lab

from engine.core.config import ConfigError, load

SWEEP = TINY + """
[sweep.lrs]
title = "Tiny lr sweep"
base = "scratch"
axes = { lr = [0.001, 0.003], batch_size = [32, 50, 64] }
"""


def test_sweep_expands_to_the_product_of_its_axes(tmp_path):
    path = write_lab(tmp_path, SWEEP)
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


ABLATION = TINY + """
[ablation.ab]
base = "scratch"
mode = "MODE"
seeds = 2
components = { a = { cutout = 4 }, b = { label_smoothing = 0.1 }, c = { tta = true } }
"""


def test_ablation_modes_expand_to_the_right_configurations(tmp_path):
    expected = {
        "add_one": ["baseline", "+a", "+b", "+c"],
        "remove_one": ["baseline", "full", "full-a", "full-b", "full-c"],
        "all": ["baseline", "+a", "+b", "+c", "+a+b", "+a+c", "+b+c", "full"],
    }
    for mode, labels in expected.items():
        ab = load(write_lab(tmp_path, ABLATION.replace("MODE", mode))).ablations["ab"]
        configs = ab.configs()
        assert [label for label, _ in configs] == labels
        assert len(ab.points()) == 2 * len(labels)  # two seeds each
        overrides = dict(configs)
        assert overrides["baseline"] == []
        if "full-b" in overrides:
            assert overrides["full-b"] == ["cutout=4", "tta=true"]
    assert ab.points()[1] == ("baseline seed=1", "scratch", ["seed=1"])
