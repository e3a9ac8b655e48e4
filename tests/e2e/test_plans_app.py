"""Sweeps and ablations end to end: launched from the app (Enter), pretraining run first, tables, bars and the few-labels curve in the terminal and as PNG."""
from conftest import TINY, write_lab

from engine.core.config import load

MINI = TINY + """
[experiment.crot]
title = "cifarnet on rotations"
model = "cifarnet"
task = "rotation"
epochs = 2

[experiment.cbase]
title = "cifarnet plain"
model = "cifarnet"
augment = "none"
epochs = 2

[ablation.mini]
base = "cbase"
mode = "add_one"
seeds = 2
components = { smooth = { label_smoothing = 0.1 }, rotation = { init = "crot" } }
"""


async def test_tiny_ablation_from_the_app_end_to_end_with_rotation_pretraining(tmp_path):
    """Enter on the ablation in the app runs the pretraining its "rotation" component
    needs, then every configuration for every seed; the compare view shows the table and
    its bars; the CLI prints the same table, and a second launch reruns nothing."""
    import csv
    import io

    from conftest import app_until, engine
    from test_app import select_experiment, wait_compare

    from engine.core import rundir as rd
    from tui.app import RotundaApp
    from tui.views import CompareView

    path = write_lab(tmp_path, MINI)
    runs = tmp_path / "runs"
    app = RotundaApp(path, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 40)) as pilot:
        await select_experiment(pilot, app, "sweep:mini")
        assert "ablation" in [str(c) for c in app.query_one("#exp-table").get_row("sweep:mini")]
        await pilot.press("enter")

        def finished():
            points = rd.list_runs(runs, "mini")
            return len(points) == 6 and all(r.state in ("done", "failed") for r in points)
        await app_until(pilot, finished, "the six points to end")
        await pilot.press("4")
        while app.query_one(CompareView).selected() != "mini":
            await pilot.press("right_square_bracket")
        await wait_compare(pilot, app, "mini")
        plot = app.query_one("#compare-plot")
        await pilot.pause(0.3)
        assert plot.display
        drawn = str(plot.render())
        assert "baseline" in drawn and "+rotation" in drawn and "mean test accuracy" in drawn
    assert [r.state for r in rd.list_runs(runs, "crot")] == ["done"]
    points = rd.list_runs(runs, "mini")
    assert all(r.state == "done" for r in points)
    rotated = [r for r in points if "init: weights" in r.path.joinpath(rd.LOG).read_text()]
    assert len(rotated) == 2  # "+rotation" for both seeds, and only they
    table = engine("compare", "mini", "--format", "csv", "--config", path, check=True).stdout
    rows = {r["Configuration"]: r for r in csv.DictReader(io.StringIO(table))}
    assert list(rows) == ["baseline", "+smooth", "+rotation"]
    assert all(r["Seeds"] == "2/2" for r in rows.values())
    assert float(rows["baseline"]["Delta"]) == 0.0  # a blank cell fails here
    for label in ("+smooth", "+rotation"):
        got = float(rows[label]["Mean acc"]) - float(rows["baseline"]["Mean acc"])
        assert abs(float(rows[label]["Delta"]) - got) < 1e-3
    again = engine("sweep", "mini", "--config", path, check=True).stdout
    assert again.count("already done") == 6 and "dependency" not in again
    assert len(rd.list_runs(runs, "mini")) == 6


FEW = TINY.replace("epochs = 4", "epochs = 1") + """
[sweep.few]
title = "Few labels"
base = ["ft", "scratch"]
axes = { per_class_train = [3, 9] }
plot = "per_class_train"
"""


async def test_few_labels_sweep_pretrains_first_and_plots_in_terminal_and_png(tmp_path):
    from conftest import engine
    from test_app import wait_compare

    from engine.core import rundir as rd
    from engine.core.config import tomllib
    from engine.report.compare import curve
    from tui.app import RotundaApp
    from tui.views import CompareView

    path = write_lab(tmp_path, FEW)
    out = engine("sweep", "few", "--config", path, check=True).stdout
    assert "running dependency rot first" in out
    runs = tmp_path / "runs"
    for r in rd.list_runs(runs, "few"):
        per_class = tomllib.loads((r.path / rd.CONFIG).read_text())["settings"]["per_class_train"]
        classes = len(rd.read_json(r.path / rd.SUMMARY)["classes"])
        assert f"; {per_class * classes} train," in (r.path / rd.LOG).read_text()
    axis, series = curve(load(path), "few", runs)
    assert axis == "per_class_train"
    assert {b: [x for x, _ in pts] for b, pts in series.items()} == {"ft": [3, 9],
                                                                   "scratch": [3, 9]}
    exported = engine("export", "few", "--config", path, check=True).stdout.split()
    png = next(p for p in exported if p.endswith("few-per_class_train.png"))
    assert open(png, "rb").read(4) == b"\x89PNG"
    app = RotundaApp(path, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("4")
        while app.query_one(CompareView).selected() != "few":
            await pilot.press("right_square_bracket")
        await wait_compare(pilot, app, "few")
        await pilot.pause(0.3)
        plot = app.query_one("#compare-plot")
        drawn = str(plot.render())
        assert plot.display and "per_class_train" in drawn and "scratch" in drawn
