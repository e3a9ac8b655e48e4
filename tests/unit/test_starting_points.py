"""Starting points are parsed once into typed values: another experiment's checkpoint, a
checkpoint file, or published weights; they survive the trip through a run's config.toml,
and a mistake in any of them is one line."""
import pytest
from conftest import TINY, write_lab

from engine.core import rundir as rd
from engine.core.config import load
from engine.core.errors import ConfigError
from engine.core.settings import (
    FromExperiment,
    FromFile,
    Pretrained,
    Settings,
    apply_overrides,
    settings_dict,
    settings_from_dict,
)


def _load(tmp_path, extra):
    return load(write_lab(tmp_path, TINY + extra))


def test_the_three_kinds_of_starting_point(tmp_path):
    cfg = _load(tmp_path, '''
[experiment.from_file]
init = { file = "weights/best.pt" }
[experiment.from_hub]
init = { pretrained = "IMAGENET1K_V1" }
''')
    assert cfg.experiment("ft").settings.init == FromExperiment("rot")
    assert cfg.experiment("ft").needs == "rot"
    assert cfg.experiment("from_file").settings.init == FromFile("weights/best.pt")
    assert cfg.experiment("from_file").needs is None
    assert cfg.experiment("from_hub").settings.init == Pretrained("IMAGENET1K_V1")
    assert cfg.experiment("scratch").settings.init is None
    assert [str(cfg.experiment(n).settings.init) for n in ("ft", "from_file", "from_hub")] == \
        ["rot", "file best.pt", "pretrained IMAGENET1K_V1"]


@pytest.mark.parametrize("text, message", [
    ('init = "runs/part1/best.pt"',
     'init = "runs/part1/best.pt" looks like a file: write init = { file = "runs/part1/best.pt" }'),
    ('init = { checkpoint = "x.pt" }', "init must be an experiment name, { file = "),
    ('init = { file = "" }', "init must be an experiment name"),
    ('init = 3', "init must be an experiment name"),
])
def test_a_bad_starting_point_is_one_line_with_its_line_number(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"\n[experiment.bad]\n{text}\n")
    line = (TINY + f"\n[experiment.bad]\n{text}\n").splitlines().index(text) + 1
    assert str(err.value).startswith(f"{tmp_path / 'experiments.toml'}:{line}: "
                                     "[experiment.bad] ")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_overrides_take_every_kind_and_config_toml_round_trips():
    s = apply_overrides(Settings(), ['init={ file = "a/b.pt" }', "train_layers=['fc']"])
    assert s.init == FromFile("a/b.pt")
    for init in (None, FromExperiment("part1"), FromFile("/x/best.pt"), Pretrained("DEFAULT")):
        s = Settings(init=init, epochs=3)
        text = rd.dump_toml({"settings": settings_dict(s)})
        back = settings_from_dict(rd.tomllib.loads(text)["settings"], "config.toml")
        assert back == s
