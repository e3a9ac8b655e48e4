"""Sweeps expand into the product of their axes."""
import pytest
from conftest import TINY

from engine.config import ConfigError, load

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
