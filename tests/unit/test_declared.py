"""Honest tables (#26): a comparison's measured figure is the latest successful run at
the experiment's declared settings; a run at other settings (a smoke run, an --set, an
experiments.toml edited since) is shown only when there is none, and then marked with a
footnote saying how it differs, in the terminal, Markdown and CSV alike."""
from conftest import TINY, write_lab
from makers import done_run

from engine.core.config import load
from engine.report.compare import compare_table


def row(table, experiment):
    return next(r for r in table.rows if r[0].split()[0] == experiment)


def test_the_declared_run_is_measured_even_when_a_smoke_run_is_newer(tmp_path):
    config = load(write_lab(tmp_path))
    full = done_run(config, "scratch", [], 0.61)
    done_run(config, "scratch", ["epochs=1", "synthetic_train=64"], 0.12)
    t = compare_table(config, "summary", config.runs_dir())
    r = row(t, "scratch")
    assert r[0] == "scratch" and r[3] == 0.61 and full.name in r
    assert not [n for n in t.notes if "declared settings:" in n]


def test_a_smoke_run_alone_is_marked_with_how_it_differs(tmp_path):
    config = load(write_lab(tmp_path))
    smoke = done_run(config, "rot", ["epochs=1", "synthetic_train=64"], 0.3)
    t = compare_table(config, "summary", config.runs_dir())
    r = row(t, "rot")
    assert r[0] == "rot ¹" and r[3] == 0.3
    assert r[4] is not None and abs(r[4] - (0.3 - 0.5)) < 1e-9  # measured - expected
    assert "Delta (points)" in [c for c, _ in t.columns]
    note = f"¹ rot/{smoke.name} is not at the declared settings: synthetic_train=64, epochs=1"
    assert note in t.notes
    assert note in t.to_markdown() and note[2:] in t.to_csv().splitlines()[1 + t.rows.index(r)] and note in t.to_text()


def test_an_experiment_edited_since_its_run_marks_the_run(tmp_path):
    cfg = write_lab(tmp_path)
    done_run(load(cfg), "scratch", [], 0.4)
    cfg.write_text(TINY.replace('[experiment.scratch]\ntitle = "Scratch"',
                                '[experiment.scratch]\ntitle = "Scratch"\nlr = 0.01'))
    config = load(cfg)
    t = compare_table(config, "summary", config.runs_dir())
    assert row(t, "scratch")[0] == "scratch ¹"
    assert any(n.endswith("declared settings: lr=0.002") for n in t.notes), t.notes
