"""The workspace (issue #24): marked runs, or a comparison's, overlaid on shared axes,
each in one colour, with the highlighted run's differing settings beside them."""
from conftest import app_until
from test_app_ux import screen_text, settle
from test_find_sort_tags import RUNS, lab  # noqa: F401  (the fixture)

from engine.core import rundir as rd
from engine.core.provenance import PROVENANCE
from tui.app import RotundaApp
from tui.views import RunsView, WorkspaceView
from tui.views.workspace import metric_points, smoothed
from tui.widgets.plots import run_colour


def test_smoothing_is_tensorboards_debiased_ema():
    assert smoothed([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    got = smoothed([1.0, 1.0, 1.0], 0.9)  # debiased: a flat line stays flat
    assert all(abs(v - 1.0) < 1e-12 for v in got)
    a = smoothed([0.0, 10.0], 0.5)
    assert a[0] == 0.0 and abs(a[1] - 5 / 0.75) < 1e-12


def test_x_is_the_epoch_the_step_or_the_runs_own_minutes():
    from engine.live.snapshot import Series
    s = Series("k", 1, ({"epoch": 1, "test_acc": 0.1, "epoch_s": 60.0},
                        {"epoch": 2, "test_acc": 0.2, "epoch_s": 120.0}),
               (5, 10, 15, 20), (2.0, 1.5, 1.2, 1.0), (0.0,) * 4)
    assert metric_points(s, "test_acc", "step", 10) == ([10, 20], [0.1, 0.2])
    assert metric_points(s, "test_acc", "wall", 10) == ([1.0, 3.0], [0.1, 0.2])
    assert metric_points(s, "step_loss", "epoch", 10)[0] == [0.5, 1.0, 1.5, 2.0]
    assert metric_points(s, "step_loss", "wall", 10)[0] == [0.5, 1.0, 2.0, 3.0]


async def test_marked_runs_overlay_with_their_colours_and_differing_settings(lab, tmp_path):  # noqa: F811
    app = RotundaApp(lab, gpu=False)
    runs = tmp_path / "runs"
    a, b = str(runs / "rot" / RUNS[0][1]), str(runs / "rot" / RUNS[1][1])
    rd.atomic_write_json(runs / "rot" / RUNS[0][1] / PROVENANCE, {
        "command": ["python", "-m", "engine", "run", "rot"], "seed": 7,
        "code": {"commit": "0123456789abcdef", "dirty": True},
        "environment": {"torch": "2.14.1", "device": "cpu"}, "data": {"hash": "feedface" * 4}})
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("2")
        view = app.query_one(RunsView)
        for key in (a, b):
            view.select(key)
            await pilot.press("space")
        await pilot.press("w")
        ws = app.query_one(WorkspaceView)
        assert app.active_view is ws and ws.keys == (a, b)
        await app_until(pilot, lambda: len(ws.series()) == 2 and all(s.epochs for s in ws.series()),
                        "both runs' curves")
        await pilot.pause(0.2)
        table = app.query_one("#ws-runs")
        for key in (a, b):
            assert run_colour(key) in str(table.get_row(key)[0].style)
        xs, ys = metric_points(ws.series()[0], "test_acc", "epoch")
        assert xs == [1, 2, 3, 4] and len(ys) == 4
        text = screen_text(app)
        assert "test acc %" in text and "settings that differ" in text
        assert "lr = 0.002" in text or "lr = 0.1" in text  # the two runs' lr differ
        assert "model =" not in text.split("settings that differ")[1].split("commit")[0]
        # the highlighted run (a, the first) and its provenance; b has none
        assert "commit 0123456789 (dirty)" in text and "torch 2.14.1" in text
        assert "data feedfacefeed" in text and "seed 7" in text
        await pilot.press("down")
        assert "no provenance.json" in screen_text(app)
        await pilot.press("up")
        await pilot.press("a")  # every setting
        assert "model = 'resnet18'" in screen_text(app)
        await pilot.press("y", "x", "tilde", "p")
        assert ws.log_y and ws.x_axis == "step" and ws.smoothing == 0.6 and ws.pinned
        assert "test acc %, log" in screen_text(app)
        await pilot.press("f")  # the first plot alone
        assert [p.display for p in app.query("#ws-plots TitledPlot")] == [
            True, False, False, False]
        await pilot.press("m", "ctrl+a", "ctrl+k", *"nope", "enter")  # not logged: said
        assert "no run logged 'nope'" in str(app.screen.query_one("#ask-errors").render())
        await pilot.press("ctrl+a", "ctrl+k", *"images_per_s test_loss", "enter")
        assert ws.metrics == ("images_per_s", "test_loss")
        await pilot.press("4", "w")  # a comparison's runs replace the marked ones
        assert app.active_view is ws and set(ws.keys) == {
            str(runs / "rot" / RUNS[0][1]), str(runs / "ft" / RUNS[2][1])}
