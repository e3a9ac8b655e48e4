"""What a W&B or TensorBoard user expects (issue #26, item 13): tables sorted by any
column (s, S, a header click), / searching a run's log, tags and a note on a run kept in
its directory, shown and filterable, and a filter on figures (acc>0.9, lr=0.1); driven by
Pilot and the CLI on runs the test writes."""
import json

import pytest
from conftest import app_until, engine, write_lab
from makers import write_run
from test_app_ux import screen_text, settle
from test_snapshots import write_demo_run

from engine.core import rundir as rd
from tui.app import RotundaApp
from tui.screens import AskText
from tui.views import RunsView, RunView
from tui.widgets.log import ReflowLog

RUNS = [("rot", "20261125-100000-aaaa", 0.30, 0.002), ("rot", "20261125-110000-bbbb", 0.10, 0.1),
        ("ft", "20261125-120000-cccc", 0.20, 0.05)]


@pytest.fixture
def lab(tmp_path):
    cfg = write_lab(tmp_path)
    for exp, run_id, acc0, lr in RUNS:  # best accuracy acc0 + 0.32
        d = write_demo_run(tmp_path / "runs", exp, run_id, "done", 4, acc0)
        rd.atomic_write_text(d / rd.CONFIG, rd.dump_toml({
            "run": {"experiment": exp, "run_id": run_id},
            "settings": {"lr": lr, "model": "resnet18" if exp == "rot" else "resnet20"}}))
    return cfg


def table_ids(app) -> list[str]:
    table = app.query_one("#runs-table")
    return [str(table.get_row(k.value)[2]) for k in table.rows]


async def click_header(pilot, table, name):
    """A click on the header of column `name`, where it is now."""
    keys = [c.key.value for c in table.columns.values()]
    x = sum(c.get_render_width(table) for c in list(table.columns.values())[:keys.index(name)])
    await pilot.click("#runs-table", offset=(x + 2, 0))


async def test_runs_sort_by_any_column_by_key_and_header_click(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("2")
        assert table_ids(app) == [r[1] for r in reversed(RUNS)]  # newest first
        await pilot.press("s")  # State, then Experiment
        await pilot.press("s")
        assert table_ids(app)[0] == "20261125-120000-cccc"  # ft before rot
        assert "Experiment ▲" in screen_text(app)
        await pilot.press("S")
        assert table_ids(app)[-1] == "20261125-120000-cccc" and "Experiment ▼" in screen_text(app)
        table = app.query_one("#runs-table")
        await click_header(pilot, table, "Best acc")
        await pilot.pause()
        assert table.sort_column == "Best acc" and not table.sort_reverse
        assert table_ids(app) == ["20261125-110000-bbbb", "20261125-120000-cccc",
                                  "20261125-100000-aaaa"]  # 42%, 52%, 62%
        await click_header(pilot, table, "Best acc")  # again: reversed
        await pilot.pause()
        assert table.sort_reverse and table_ids(app)[0] == "20261125-100000-aaaa"


async def test_experiments_and_compare_tables_sort_too(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 3)
        table = app.query_one("#exp-table")
        names = lambda: [k.value for k in table.rows if not k.value.startswith("group:")]
        before = names()
        await pilot.press("s")  # Experiment
        assert names() == sorted(before)
        await pilot.press("S")
        assert names() == sorted(before, reverse=True)


async def test_tags_and_a_note_are_kept_in_the_run_shown_and_filtered(lab, tmp_path):
    app = RotundaApp(lab, gpu=False)
    key = str(tmp_path / "runs" / "rot" / "20261125-110000-bbbb")
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("2")
        app.query_one(RunsView).select(key)
        await pilot.press("t")
        assert isinstance(app.screen, AskText)
        await pilot.press(*"high lr!", "enter")  # "lr!" is no tag: the dialog says so
        assert isinstance(app.screen, AskText)
        assert "not a tag" in str(app.screen.query_one("#ask-errors").render())
        await pilot.press("backspace", "enter")
        await pilot.press("n")
        await pilot.press(*"lr 0.1 diverged early", "enter")
        await app_until(pilot, lambda: app.snapshot.row(key).note, "the note in the row")
        notes = json.loads((tmp_path / "runs/rot/20261125-110000-bbbb" / rd.NOTES).read_text())
        assert notes == {"tags": ["high", "lr"], "note": "lr 0.1 diverged early"}
        await app_until(pilot, lambda: "#high #lr lr 0.1 diverg…" in screen_text(app),
                        "the tags and note in the Tags column (cut to 24 columns)")
        await pilot.press("slash", *"#high")
        await pilot.pause()
        assert table_ids(app) == ["20261125-110000-bbbb"]
        await pilot.press("escape")
        await pilot.press("slash", *"diverged")  # the note's words filter too
        await pilot.pause()
        assert table_ids(app) == ["20261125-110000-bbbb"]
    # and the CLI sees the same tags
    out = engine("status", "--config", str(lab), "--where", "#lr", check=True).stdout
    assert "20261125-110000-bbbb" in out and "aaaa" not in out and "#high #lr" in out


async def test_filter_on_figures_and_settings(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("2", "slash", *"acc>50")  # above 1: a percent
        await pilot.pause()
        assert sorted(table_ids(app)) == ["20261125-100000-aaaa", "20261125-120000-cccc"]
        await pilot.press("escape", "slash", *"acc>0.5 lr=0.05")  # settings: read on demand
        await app_until(pilot, lambda: table_ids(app) == ["20261125-120000-cccc"],
                        "the one run at lr 0.05 above 50%")
        await pilot.press("escape", "slash", *"model=resnet1*")
        await app_until(pilot, lambda: sorted(table_ids(app)) == [
            "20261125-100000-aaaa", "20261125-110000-bbbb"], "the resnet18 runs")
        await pilot.press("escape", "slash", *"acx>0.5", "enter")
        await app_until(pilot, lambda: any("no run or experiment has acx" in str(n.message)
                                           for n in app._notifications), "the typo named")
        await pilot.press("escape", "1", "slash", *"lr=0.002")  # experiments: declared
        await pilot.pause()
        rows = [k.value for k in app.query_one("#exp-table").rows]
        assert "rot" in rows and "ft" in rows  # both declare the defaults' lr
        await pilot.press("escape", "slash", *"lr=0.3")
        await pilot.pause()
        assert not [k for k in app.query_one("#exp-table").rows
                    if not k.value.startswith("group:")]


async def test_slash_in_the_run_view_searches_its_log(lab, tmp_path):
    app = RotundaApp(lab, gpu=False)
    key = str(tmp_path / "runs" / "rot" / "20261125-100000-aaaa")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 3)
        app.query_one(RunView).select(key)
        await pilot.press("3")
        log = app.query_one("#run-log", ReflowLog)
        await app_until(pilot, lambda: len(log.source) == 4, "the run's log")
        await pilot.press("slash", *"epoch 2/4")
        await pilot.pause()
        assert app.focused.id == "log-search" and app.active_view.ID == "run"
        assert "1/1 lines" in str(app.query_one("#log-hits").render())
        assert "epoch 2/4" in log.lines[log.hit].text
        await pilot.press("ctrl+a", "ctrl+k", *"test loss")  # ctrl+k: delete to the end
        await pilot.pause()
        hits = log.hits()
        assert len(hits) == 4 and log.hit == hits[-1]  # the newest first
        await pilot.press("enter")  # the one above
        assert log.hit == hits[-2] and "3/4 lines" in str(app.query_one("#log-hits").render())
        await pilot.press("down")
        assert log.hit == hits[-1]
        await pilot.press("ctrl+a", "ctrl+k", *"nowhere")
        await pilot.pause()
        assert "not found" in str(app.query_one("#log-hits").render())
        await pilot.press("escape")
        assert not app.query_one("#log-find").display and not log.term


def test_engine_tag_and_note_refuse_bad_input_and_where_names_typos(tmp_path):
    cfg = write_lab(tmp_path)
    write_run(tmp_path / "runs", "rot", "20261125-100000-aaaa", status={"best_acc": 0.5})
    ok = engine("tag", "--config", str(cfg), "rot", "baseline", check=True)
    assert ok.stdout.strip() == "rot/20261125-100000-aaaa: #baseline"
    bad = engine("tag", "--config", str(cfg), "rot", "two words!")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a tag" in bad.stderr
    engine("note", "--config", str(cfg), "rot", "kept", check=True)
    assert engine("note", "--config", str(cfg), "rot", check=True).stdout.strip() == "kept"
    typo = engine("status", "--config", str(cfg), "--where", "acx>0.1")
    assert typo.returncode == 2 and 'did you mean "acc"' in typo.stderr
    got = engine("status", "--config", str(cfg), "--where", "acc>=0.5 #baseline", check=True)
    assert "20261125-100000-aaaa" in got.stdout
    none = engine("status", "--config", str(cfg), "--where", "acc>0.5", check=True)
    assert "no runs where acc>0.5" in none.stdout


async def test_runs_group_by_a_setting_with_counts_best_and_folding(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("2", "G", *"model", "enter")  # a setting: read on demand
        table = app.query_one("#runs-table")
        keys = lambda: [k.value for k in table.rows]  # noqa: E731
        await app_until(pilot, lambda: "group:resnet18" in keys(), "the resnet18 group")
        assert keys()[0] == "group:resnet20" and keys()[2] == "group:resnet18"  # newest first
        head = [str(c) for c in table.get_row("group:resnet18")]
        assert head[:2] == ["▾ 2", "model=resnet18"] and "62.00%" in head
        table.move_cursor(row=2)
        assert app.query_one(RunsView).selected_run() is None  # a group is no run to act on
        await pilot.press("enter")  # folds the group: its runs leave the table
        assert [k.rsplit("/", 1)[-1] for k in keys()] == [
            "group:resnet20", "20261125-120000-cccc", "group:resnet18"]
        assert str(table.get_row("group:resnet18")[0]) == "▸ 2"
        await pilot.press("enter")  # and back
        assert len(keys()) == 5
        await pilot.press("G", "ctrl+a", "ctrl+k", "enter")  # empty: no groups
        assert not [k for k in keys() if k.startswith("group:")]
