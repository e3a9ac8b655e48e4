"""The app driven by Textual's Pilot, against real engine processes on the synthetic data."""
import pytest
from conftest import TINY, app_until, engine, wait_until, write_lab

from engine.core import rundir as rd
from engine.core.table import PCT, SECS, fmt
from tui.app import RotundaApp
from tui.screens import Confirm
from tui.views import CompareView
from tui.views.base import selected_key

# Two epochs keep the app tests short; everything else is the tiny config.
FAST = TINY.replace("epochs = 4", "epochs = 2")


@pytest.fixture
def fast_config(tmp_path):
    return write_lab(tmp_path, FAST)


async def select_experiment(pilot, app, name):
    """Move the experiments table's cursor down to `name` (once the table holds it)."""
    table = app.query_one("#exp-table")
    await app_until(pilot, lambda: name in {k.value for k in table.rows},
                    f"{name} in the experiments table")
    for _ in range(table.row_count):
        if selected_key(table) == name:
            return
        await pilot.press("down")
        await pilot.pause()
    raise AssertionError(f"the cursor never reached {name}")


async def wait_compare(pilot, app, name):
    """The comparison is selected at once; its table comes from the watcher's thread."""
    compare = app.query_one(CompareView)
    assert compare.selected() == name
    await app_until(pilot, lambda: compare.shown is not None and compare.shown.name == name,
                    f"comparison {name} shown")


def cell_texts(table, key):
    return [str(c) for c in table.get_row(key)]


def runs_of(app, exp):
    return [r for r in app.snapshot.rows if r.experiment == exp]


async def test_launch_watch_done_and_compare(fast_config):
    app = RotundaApp(fast_config, gpu=False, poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await select_experiment(pilot, app, "scratch")
        await pilot.press("enter")
        await app_until(pilot, lambda: runs_of(app, "scratch"), "the scratch run")
        await app_until(pilot, lambda: runs_of(app, "scratch")[0].state == "done", "it done")
        row = runs_of(app, "scratch")[0]
        summary = rd.read_json(rd.Path(row.key) / rd.SUMMARY)
        await pilot.press("2")
        assert app.query_one("TabbedContent").active == "runs"
        runs = app.query_one("#runs-table")
        cells = dict(zip([str(c.label) for c in runs.columns.values()], cell_texts(runs, row.key)))
        assert cells["State"] == "done" and cells["Experiment"] == "scratch"
        assert cells["Epoch"] == "2/2"
        assert cells["Best acc"] == fmt(max(m["test_acc"] for m in rd.read_jsonl(rd.Path(row.key) / rd.METRICS)
                                   if m["kind"] == "epoch"), PCT)
        await pilot.press("enter")  # open the run: plots and log
        await app_until(pilot, lambda: len(app.query_one("#run-log").lines) > 3, "the log")
        assert "done: test acc" in "\n".join(s.text for s in app.query_one("#run-log").lines)
        await pilot.press("4", "right_square_bracket")  # the side-by-side comparison
        await wait_compare(pilot, app, "side")
        table = app.query_one("#compare-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        scratch = next(r for r in rows if r[0] == "scratch")
        assert scratch[3] == fmt(summary["test_acc_at_best"], PCT)
        await pilot.press("e")  # the comparison's report (in a worker thread)
        reports = fast_config.parent / "reports"
        await app_until(pilot, lambda: (reports / "side.md").exists(), "reports/side.md")
        doc = (reports / "side.md").read_text()
        assert "## Tiny side by side" in doc and "](figures/side-curves.png)" in doc
        assert "## Appendix: the runs behind the figures" in doc
        assert (reports / "figures" / "side.csv").read_text().startswith("Experiment,")


@pytest.mark.timeout(900)  # two real runs one after another: room on a loaded machine
async def test_runs_survive_the_app_and_it_reattaches(fast_config):
    app = RotundaApp(fast_config, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await select_experiment(pilot, app, "ft")  # needs rot, which has no run
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await app_until(pilot, lambda: runs_of(app, "rot") and runs_of(app, "ft"),
                        "the rot and ft runs")
        await pilot.press("q")
    runs_dir = fast_config.parent / "runs"
    # the app is gone; the detached process goes on (no app to keep running: a plain wait)
    wait_until(lambda: {r.experiment: r.state for r in rd.list_runs(runs_dir)}.get("ft")
               in rd.FINAL_STATES, "ft to end")
    states = {r.experiment: r.state for r in rd.list_runs(runs_dir)}
    assert states == {"rot": "done", "ft": "done"}
    rot, ft = (rd.latest_done(runs_dir, e).status for e in ("rot", "ft"))
    assert ft["started"] >= rot["ended"]  # ft waited for the pretraining it needs
    app = RotundaApp(fast_config, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await app_until(pilot, lambda: len(app.snapshot.rows) == 2, "two runs in the app")
        assert [r.state for r in app.snapshot.rows] == ["done", "done"]
        await pilot.press("4")  # the summary now has measured figures for rot and ft
        await wait_compare(pilot, app, "summary")
        table = app.query_one("#compare-table")
        head = [str(c.label) for c in table.columns.values()]
        rows = {str(table.get_row_at(i)[0]): dict(zip(head, map(str, table.get_row_at(i))))
                for i in range(table.row_count)}
        rot = rd.latest_done(runs_dir, "rot").summary
        assert rows["rot"]["Measured"] == fmt(rot["test_acc_at_best"], PCT)
        assert rows["scratch"]["Run"] == "no successful run"
        spent, reached = 0.0, None  # "To expected": epoch seconds until acc >= expected
        for m in rd.read_jsonl(rd.latest_done(runs_dir, "rot").path / rd.METRICS):
            if m["kind"] == "epoch":
                spent += m["epoch_s"]
                if reached is None and m["test_acc"] >= 0.5:
                    reached = spent
        assert rows["rot"]["To expected"] == fmt(reached, SECS)


async def test_cancel_from_the_app_sends_sigterm(fast_config):
    app = RotundaApp(fast_config, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await select_experiment(pilot, app, "scratch")
        await pilot.press("o")  # launch with overrides
        await pilot.press(*"epochs=60", "enter")
        await app_until(pilot, lambda: runs_of(app, "scratch")
                        and runs_of(app, "scratch")[0].state == "running", "scratch running")
        await pilot.press("2")
        await pilot.pause(0.3)
        await pilot.press("c")
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await app_until(pilot, lambda: runs_of(app, "scratch")[0].state == "cancelled",
                        "scratch cancelled")
        run = rd.load_run(rd.Path(runs_of(app, "scratch")[0].key))
        assert run.epochs == 60 and run.status["error"].startswith("cancelled")


async def test_bad_experiments_file_shows_the_cli_line(tmp_path):
    cfg = write_lab(tmp_path, '[experiment.a]\nepochs = "many"\n')
    cli = engine("list", "--config", cfg).stderr.strip()
    assert cli.startswith("error: ")
    app = RotundaApp(cfg, gpu=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        shown = str(app.query_one("#config-error").render())
        assert shown == cli[len("error: "):]
        assert app.query_one("#exp-table").row_count == 0
        await pilot.press("2", "question_mark")  # the rest of the app still works
        assert type(app.screen).__name__ == "Help"
        # fixing the file reloads it
        await pilot.press("escape")
        cfg.write_text(FAST)
        await app_until(pilot, lambda: app.snapshot.config_error is None, "the file reloaded")
        await pilot.press("1")
        assert app.query_one("#exp-table").row_count == 5  # a group row and four experiments
