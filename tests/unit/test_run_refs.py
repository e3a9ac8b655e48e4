"""A run named as a newcomer names it (#26): an experiment's name is its latest run
wherever a run is expected, said on stderr when it has several; a name that is neither
a comparison nor a run says both, with a did-you-mean, in one line and exit 2."""
from conftest import engine, write_lab
from makers import done_run

from engine.core.config import load


def test_an_experiment_name_is_its_only_run_then_its_latest_said(tmp_path):
    cfg = write_lab(tmp_path)
    config = load(cfg)
    first = done_run(config, "scratch")
    got = engine("diff", "scratch", f"scratch/{first.name}", "--config", cfg)
    assert got.returncode == 0 and "of " not in got.stderr, got.stderr
    second = done_run(config, "scratch", ["epochs=1"])
    got = engine("diff", "scratch", first, "--config", cfg)
    assert got.returncode == 0, got.stderr
    assert f"scratch: its latest run, {second.name} (of 2" in got.stderr
    assert "epochs" in got.stdout  # second against first: what differs


def test_export_of_an_unknown_name_speaks_of_comparisons_and_runs(tmp_path):
    cfg = write_lab(tmp_path)
    done_run(load(cfg), "scratch")
    for name, hint in (("nosuch", ""), ("scrach", '(did you mean "scratch"?)'),
                       ("sumary", '(did you mean "summary"?)')):
        got = engine("export", name, "--config", cfg)
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        (line,) = got.stderr.strip().splitlines()
        assert f"no comparison (summary, side) or run matches {name!r}" in line
        assert hint in line
