"""experiments.toml: every class of mistake gets one line with file, line and key, exit 2."""
import pytest
from conftest import ROOT, engine, write_lab

from engine.core.config import ConfigError, dependency_chain, load
from engine.core.settings import Settings, apply_overrides

BAD = {
    "syntax": ('[defaults]\nepochs = = 3\n', r"experiments.toml:2: syntax error"),
    "unknown key": ('[experiment.a]\nepoch = 3\n',
                    'experiments.toml:2: [experiment.a] unknown key \'epoch\' (did you mean "epochs"?)'),
    "wrong type": ('[experiment.a]\n\nbatch_size = "big"\n',
                   "experiments.toml:3: [experiment.a] batch_size must be an integer, got 'big'"),
    "unknown init": ('[experiment.part1]\n[experiment.part2]\ninit = "part_1"\n',
                     'experiments.toml:3: [experiment.part2] init = "part_1": no experiment '
                     'named "part_1" (did you mean "part1"?)'),
    "cycle": ('[experiment.a]\ninit = "b"\n[experiment.b]\ninit = "a"\n',
              "dependency cycle: a -> b -> a"),
    "unknown model": ('[defaults]\nmodel = "resnet81"\n[experiment.a]\n',
                      "experiments.toml:2: [defaults] model = 'resnet81' is not one of"),
    "unknown dataset": ('[experiment.a]\ndataset = "cifar100"\n',
                        "experiments.toml:2: [experiment.a] dataset = 'cifar100' is not one of"),
    "unknown optimizer": ('[experiment.a]\noptimizer = "adamw2"\n',
                          "[experiment.a] optimizer = 'adamw2' is not one of sgd, adam, adamw, "
                          'rmsprop (did you mean "adamw"?)'),
    "unknown table": ('[experiments.a]\n', "experiments.toml:1: unknown table [experiments]"),
    "bad expect": ('[experiment.a]\nexpect = { metric = "acc", value = 1 }\n',
                   "experiments.toml:2: [experiment.a] expect.metric 'acc' is not one of"),
    "compare names": ('[experiment.a]\n[compare.c]\nexperiments = ["b"]\n',
                      'experiments.toml:3: [compare.c] no experiment named "b"'),
    "multistep": ('[experiment.a]\nschedule = "multistep"\n', "needs milestones"),
    "layer": ('[experiment.a]\ntrain_layers = ["layer5"]\n', "resnet18 has no layer 'layer5'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_toml_one_line_exit_2(tmp_path, case):
    text, expected = BAD[case]
    write_lab(tmp_path, text)
    proc = engine("list", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expected in lines[0]


def test_missing_file_is_one_line(tmp_path):
    proc = engine("list", "--config", tmp_path / "nope.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "file not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_override_is_one_line(tiny_config):
    proc = engine("run", "rot", "--set", "lr=fast", "--config", tiny_config)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --set lr=fast: lr must be a number, got 'fast'"
    proc = engine("run", "rot", "--set", "devise=cpu", "--config", tiny_config)
    assert 'unknown key \'devise\' (did you mean "device"?)' in proc.stderr


def test_precedence_defaults_experiment_override(tiny_config):
    cfg = load(tiny_config)
    assert Settings().epochs == 30
    assert cfg.defaults.epochs == 4
    probe = cfg.experiment("probe")
    assert probe.settings.train_layers == ("fc",) and probe.needs == "rot"
    s = apply_overrides(probe.settings, ["epochs=7", "lr=1", "train_layers=['layer4','fc']"])
    assert (s.epochs, s.lr, s.train_layers) == (7, 1.0, ("layer4", "fc"))
    assert dependency_chain(cfg, "ft") == ["rot", "ft"]


def test_project_experiments_file_is_valid():
    cfg = load(ROOT / "experiments.toml")
    for name in ("part1", "part2", "part3", "part4", "linear_probe", "demo"):
        assert name in cfg.experiments
    assert cfg.experiment("part2").settings.train_layers == ("layer4", "fc")
    assert cfg.experiment("part1").expect.value == 0.78
    assert [cfg.experiment(p).expect.value for p in ("part2", "part3", "part4")] == [0.6, 0.8, 0.82]
    with pytest.raises(ConfigError, match='did you mean "part1"'):
        cfg.experiment("part_1")



def test_every_bad_override_is_reported_not_just_the_first():
    from engine.core.settings import override_errors

    assert override_errors(Settings(), ["epochs=abc", "foo=1", "lr=0.1"]) == [
        "--set epochs=abc: epochs must be an integer, got 'abc'",
        "--set foo=1: unknown key 'foo'"]
    assert override_errors(Settings(), ["epochs=3", "lr=0.05"]) == []
