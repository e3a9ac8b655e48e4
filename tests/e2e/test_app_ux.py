"""What a new user tripped over in the app, driven by Pilot on runs the test writes (and,
for the gallery, one real run)."""
import html
import os
import re
import time
from pathlib import Path

import pytest
from conftest import app_until, engine, write_lab
from makers import write_run
from test_snapshots import LONG_ERROR, write_demo_run

from engine.core import rundir as rd
from engine.launch.local import hostname, process_start_time
from tui.app import RotundaApp
from tui.screens import AskText, Confirm, Gallery
from tui.views import RunsView, RunView
from tui.views import experiments as experiments_view
from tui.views.base import selected_key
from tui.widgets.plots import TitledPlot, fit_title


@pytest.fixture
def lab(tmp_path):
    cfg = write_lab(tmp_path)
    write_demo_run(tmp_path / "runs", "rot", "20261125-100000-aaaa", "done", 4, 0.3)
    return cfg


def live_run(runs, exp, run_id, state, **status):
    """A run this process owns (so that it is not 'lost'), in the middle of epoch 2."""
    return write_run(runs, exp, run_id, state, status={
        "experiment": exp, "run_id": run_id, "executor": "local",
        "pid": os.getpid(), "pid_start": process_start_time(os.getpid()), "host": hostname(),
        "started": "2026-11-25T10:00:00+00:00", "segment_start": time.time() - 100,
        "active_before": 0.0, "epoch": 1, "epochs": 4, "step": 37, "steps": 100,
        "best_acc": 0.4, "images_per_s": 300.0, "epoch_s": 50.0, "eta_s": 600.0,
        "updated": time.time(), **status})


def screen_text(app) -> str:
    """The screen's text, line by line, from its SVG screenshot."""
    rows: dict = {}
    for x, y, s in re.findall(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>',
                              app.export_screenshot()):
        rows.setdefault(float(y), []).append((float(x), html.unescape(s).replace("\xa0", " ")))
    return "\n".join("".join(s for _, s in sorted(rows[y])) for y in sorted(rows))


async def settle(pilot, app, n_rows):
    await app_until(pilot, lambda: len(app.snapshot.rows) >= n_rows, f"{n_rows} runs in the app")
    await pilot.pause(0.3)


def cells(table, key):
    head = [str(c.label) for c in table.columns.values()]
    return dict(zip(head, map(str, table.get_row(key))))


def shown_keys(app):
    return {key for key, b in app.screen.active_bindings.items() if b.binding.show}


async def test_help_shows_key_names_as_typed(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        text = str(app.screen.query_one("#pager-text").render())
        assert "[/b]" not in text
        assert any(line.split()[:1] == ["["] and "Previous comparison" in line
                   for line in text.splitlines())


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_runs_show_steps_and_a_live_eta_that_fit(tmp_path, lab, size):
    key = str(live_run(tmp_path / "runs", "part_long_name", "20261125-110000-bbbb", "running"))
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("2")
        await pilot.pause(0.3)
        table = app.query_one("#runs-table")
        row = cells(table, key)
        assert row["Epoch"] == "1/4 (37/100)" and row["Run"] == "20261125-110000-bbbb"
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= size[0] - 2
        eta = row["ETA"]
        await pilot.pause(1.5)
        assert cells(table, key)["ETA"] != eta  # it counts down between epochs


async def test_a_live_row_follows_its_run_and_its_column_widens_with_it(tmp_path, lab):
    runs = tmp_path / "runs"
    key = str(live_run(runs, "scratch", "20261125-110000-bbbb", "running"))
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("2")
        table = app.query_one("#runs-table")
        await app_until(pilot, lambda: key in [k.value for k in table.rows], "the live row")
        done = cells(table, str(runs / "rot" / "20261125-100000-aaaa"))
        rd.update_status(Path(key), step=38)  # training on: only its cells move
        await app_until(pilot, lambda: cells(table, key)["Epoch"] == "1/4 (38/100)",
                        "the step to move")
        assert cells(table, str(runs / "rot" / "20261125-100000-aaaa")) == done
        rd.update_status(Path(key), epoch=1, step=1234, steps=10000)  # a wider cell
        wide = "1/4 (1234/10000)"
        await app_until(pilot, lambda: cells(table, key)["Epoch"] == wide, "the wider cell")
        column = next(c for c in table.columns.values() if str(c.label).startswith("Epoch"))
        assert column.content_width >= len(wide)


async def test_a_run_that_ends_while_another_tab_shows_is_told_on_the_run_tab(tmp_path,
                                                                               lab):
    run = live_run(tmp_path / "runs", "scratch", "20261125-110000-bbbb", "running")
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("3")  # the running run
        title = app.query_one("#run-title")
        await app_until(pilot, lambda: str(title.render()).startswith("running"), "running")
        await pilot.press("2")
        rd.update_status(run, state="failed", ended=rd.now_iso(), error="boom")
        await app_until(pilot, lambda: app.snapshot.row(str(run)).state == "failed",
                        "the failure in a snapshot")
        await pilot.pause(0.3)
        await pilot.press("3")
        await app_until(pilot, lambda: str(title.render()).startswith("failed"),
                        "the Run tab to tell the failure")


async def test_latest_shows_the_result_and_fits_at_100(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        table = app.query_one("#exp-table")
        widths = [c.get_render_width(table) for c in table.columns.values()]
        assert [str(c.label) for c in table.columns.values()].index("Latest") == 1
        assert sum(widths[:2]) < 40
        assert cells(table, "rot")["Latest"] == "done 62.0%"


async def test_the_cursor_skips_group_titles_and_the_footer_hints(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        table = app.query_one("#exp-table")
        seen = [selected_key(table)]
        for key in ["up", "down", "down", "down", "down", "down", "down", "up", "home"]:
            await pilot.press(key)
            await pilot.pause(0.05)
            seen.append(selected_key(table))
        assert seen[0] == "rot" and not any(k.startswith("group:") for k in seen)
        assert "probe" in seen
        assert app.query_one("#exp-detail").render()  # never blank
        assert {"enter", "o"} <= shown_keys(app) and "g" not in shown_keys(app)
        await pilot.press("2")
        assert {"enter", "c", "r", "g"} <= shown_keys(app) and "o" not in shown_keys(app)


async def test_overrides_dialog_lists_every_mistake_and_stays_open(lab):
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("o", *"epochs=abc foo=1", "enter")
        assert isinstance(app.screen, AskText)
        errors = str(app.screen.query_one("#ask-errors").render()).splitlines()
        assert len(errors) == 2 and "epochs" in errors[0] and "foo" in errors[1]


@pytest.mark.parametrize("state,queued_notice", [("queued", True), ("running", False)])
async def test_a_launched_run_is_followed_and_queueing_told_only_when_true(
        tmp_path, lab, monkeypatch, state, queued_notice):
    def fake_launch(config, name, overrides, runs_dir, with_deps=False):
        live_run(runs_dir, name, "20261125-120000-cccc", state, waiting_for="gpu")
        return "20261125-120000-cccc", runs_dir / ".launch" / "x"
    monkeypatch.setattr(experiments_view, "launch_detached", fake_launch)
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("down", "down", "enter")  # scratch
        key = str(tmp_path / "runs" / "scratch" / "20261125-120000-cccc")
        await settle(pilot, app, 2)
        assert selected_key(app.query_one(RunsView).query_one("#runs-table")) == key
        assert app.query_one(RunView).current == key
        await pilot.pause(2.5)
        told = [n.message for n in app._notifications]
        assert not any("waits as queued" in m for m in told)
        assert any("is queued: waiting for a free GPU slot" in m for m in told) == queued_notice


async def test_run_detail_fits_the_terminal(tmp_path, lab):
    write_demo_run(tmp_path / "runs", "scratch", "20261125-102000-cccc", "failed", 2, 0.1,
                   error=LONG_ERROR, first_test_loss=177.0)
    for size, plots in [((80, 24), 2), ((200, 50), 6)]:
        app = RotundaApp(lab, gpu=False, poll_s=0.2)
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app, 2)
            await pilot.press("3")
            await pilot.pause(0.5)
            shown = [p for p in app.query("#plots PlotextPlot") if p.display]
            assert len(shown) == plots and all(p.size.height >= 8 for p in shown)
            title = app.query_one("#run-title")
            assert LONG_ERROR in " ".join(str(title.render()).split())
            log = app.query_one("#run-log")
            assert "img/s" in "".join(s.text for s in log.lines)
            assert all(s.cell_length <= log.scrollable_content_region.width for s in log.lines)
            if size == (200, 50):
                assert log.size.height >= 10


async def test_a_broken_experiments_file_says_why_and_exports_nothing(tmp_path):
    cfg = write_lab(tmp_path, '[experiment.a]\nepochs = "many"\n')
    app = RotundaApp(cfg, gpu=False)
    async with app.run_test(size=(100, 30)) as pilot:
        error = await app_until(pilot, lambda: app.snapshot.config_error, "the config error")
        await pilot.press("4")
        assert error in str(app.query_one("#compare-notes").render())
        await pilot.press("e")
        await app_until(pilot, lambda: any(n.message == error for n in app._notifications),
                        "the error as a notification")
        assert not (tmp_path / "reports").exists()


async def test_the_gallery_fits_the_terminal(trained):
    for width, height in [(80, 24), (200, 50)]:
        app = RotundaApp(trained, gpu=False)
        async with app.run_test(size=(width, height)) as pilot:
            await settle(pilot, app, 3)
            await pilot.press("2", "g")
            assert isinstance(app.screen, Gallery)
            box = app.screen.query_one("#gallery-box")
            await app_until(pilot, lambda app=app: "correct" in str(
                app.screen.query_one("#gallery-text").render()), "the gallery's images")
            inner = box.scrollable_content_region.width
            lines = str(app.screen.query_one("#gallery-text").render()).splitlines()
            per_row = len(lines[0].split())  # an image's top row is one run of blocks
            assert per_row == (inner + 2) // 18 and len(lines[0].rstrip()) <= inner
            left = box.region.x
            assert abs(left - (width - box.region.right)) <= 1  # centred
            assert box.region.width >= width - 6


async def test_launching_an_experiment_with_a_run_going_asks_first(tmp_path, lab, monkeypatch):
    """Enter twice on scratch queued a second run silently (#26): now it asks, and n
    launches nothing."""
    launched = []
    monkeypatch.setattr(experiments_view, "launch_detached",
                        lambda *a, **k: launched.append(a) or ("x", tmp_path / "x"))
    live_run(tmp_path / "runs", "scratch", "20261125-120000-cccc", "running")
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("down", "down", "enter")  # scratch
        await app_until(pilot, lambda: isinstance(app.screen, Confirm), "the question")
        assert "scratch is running (ep 1/4)" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await app_until(pilot, lambda: not isinstance(app.screen, Confirm), "the answer")
        assert launched == []
        await pilot.press("enter", "y")
        await app_until(pilot, lambda: launched, "the launch after yes")


def test_engine_launch_with_a_run_going_refuses_without_yes(tmp_path, lab):
    live_run(tmp_path / "runs", "scratch", "20261125-120000-cccc", "queued")
    got = engine("launch", "scratch", "--config", lab)
    assert got.returncode != 0 and "Traceback" not in got.stderr
    assert got.stderr.strip().splitlines() == [
        "error: scratch is queued; --yes launches another"]
    assert [p.name for p in (tmp_path / "runs" / "scratch").iterdir()] == [
        "20261125-120000-cccc"]


async def test_home_and_end_jump_rows_and_3_opens_the_run_meant(tmp_path, lab):
    """End scrolled Experiments sideways and Home did not move the Runs cursor (#26); 3
    opened a queued run rather than the running one."""
    runs = tmp_path / "runs"
    running = live_run(runs, "ft", "20261125-110000-dddd", "running")
    queued = live_run(runs, "scratch", "20261125-120000-cccc", "queued")
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 3)
        exp = app.query_one("#exp-table")
        await pilot.press("end")
        assert exp.cursor_row == exp.row_count - 1 and exp.scroll_x == 0
        await pilot.press("home")
        assert exp.cursor_row <= 1  # the first experiment (row 0 may be its group's title)
        await pilot.press("3")  # never opened one: the newest running run, not the queued
        assert app.query_one(RunView).current == str(running)
        await pilot.press("2")
        table = app.query_one("#runs-table")
        await pilot.press("end")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("home")
        assert table.cursor_row == 0 and selected_key(table) == str(queued)  # newest first
        await pilot.press("3")  # the run under the cursor
        assert app.query_one(RunView).current == str(queued)


async def test_reloading_a_broken_file_keeps_the_last_good_list_under_its_error(
        tmp_path, lab, monkeypatch):
    """R with a broken experiments.toml replaced the list with the error (#26)."""
    launched = []
    monkeypatch.setattr(experiments_view, "launch_detached",
                        lambda *a, **k: launched.append(a) or ("x", tmp_path / "x"))
    good = lab.read_text()
    app = RotundaApp(lab, gpu=False, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        table = app.query_one("#exp-table")
        rows = table.row_count
        lab.write_text(good + '\n[experiment.bad]\nepochs = "many"\n')
        await pilot.press("R")
        error = await app_until(pilot, lambda: app.snapshot.config_error, "the error")
        assert "epochs" in error
        bar = app.query_one("#config-error")
        await app_until(pilot, lambda: bar.display, "the error bar")
        assert error in str(bar.render()) and "last version that loaded" in str(bar.render())
        assert table.row_count == rows  # the list stays
        await pilot.press("down", "down", "enter")  # scratch: launching waits for the fix
        await app_until(pilot, lambda: any(error in n.message for n in app._notifications),
                        "the error as a notification")
        assert launched == []
        lab.write_text(good)
        await pilot.press("R")
        await app_until(pilot, lambda: not bar.display, "the bar gone after the fix")


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_the_log_uses_the_panels_width_and_reflows_on_resize(tmp_path, lab, size):
    """A queued run opened with an empty log, which then started: its lines wrapped at
    about 20 columns for good (#26)."""
    run = live_run(tmp_path / "runs", "scratch", "20261125-120000-cccc", "queued", log="")
    app = RotundaApp(lab, gpu=False, poll_s=0.1)
    line = ("10:01:00 epoch 1/4: train loss 1.4916 acc 0.4982 | test loss 1.4916 acc 0.4806 "
            "| lr 0.01404 | 6078 img/s | 3.9s")
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("2", "home", "enter")
        log = app.query_one("#run-log")
        assert app.query_one(RunView).current == str(run)
        with open(run / "log.txt", "a") as f:
            f.write("".join(f"{line} {i}\n" for i in range(5)))
        await app_until(pilot, lambda: len(log.source) == 5, "the five lines")
        await pilot.pause(0.2)
        width = log.scrollable_content_region.width

        def widest():
            return max(strip.cell_length for strip in log.lines)
        assert widest() >= min(width, len(line)) - 12, (widest(), width)  # whole words
        await pilot.resize_terminal(size[0] + 40, size[1])
        await app_until(pilot, lambda: log.scrollable_content_region.width > width,
                        "the wider panel")
        await pilot.pause(0.2)
        wider = log.scrollable_content_region.width
        assert widest() >= min(wider, len(line)) - 12, (widest(), wider)


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (200, 50)])
async def test_every_plot_keeps_a_title_that_fits(tmp_path, lab, size):
    """At 120 columns the third plot's title vanished, and an SSL run's "train cyan, test
    orange, k-NN green" (#26): plotext drops a title wider than its plot."""
    run = live_run(tmp_path / "runs", "scratch", "20261125-120000-cccc", "running",
                   log="", epoch=2)
    metrics = [{"kind": "step", "epoch": 1, "step": s, "loss": 2.0 / s, "lr": 0.01}
               for s in range(1, 30)]
    metrics += [{"kind": "epoch", "epoch": e, "train_loss": 1.0 / e, "train_acc": 0.2 * e,
                 "test_loss": 1.1 / e, "test_acc": 0.2 * e, "knn_acc": 0.15 * e,
                 "lr": 0.01, "images_per_s": 300.0, "epoch_s": 5.0,
                 "cpu_cores": 1.5, "rss_peak_mb": 900.0 + e}
                for e in (1, 2)]
    for m in metrics:
        rd.append_jsonl(run / rd.METRICS, m)
    app = RotundaApp(lab, gpu=False, poll_s=0.1)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("2", "home", "enter")
        view = app.query_one(RunView)
        await app_until(pilot, lambda: view.drawn is not None and not view.dirty, "the plots")
        await pilot.pause(0.3)
        screen = screen_text(app)
        shown = [p for p in view.query(TitledPlot) if p.display]
        assert shown and "k-NN" in shown[1].title
        if len(shown) == 6:  # a CPU run's memory: the process's, and its CPU use
            assert shown[5].title == "RSS peak, MiB, 150% CPU"
        for p in shown:
            fitted = fit_title(p.title, p.size.width - 2)
            assert 0 < len(fitted) <= p.size.width - 2 and "…" not in fitted, (p.title, fitted)
            assert fitted in screen, (fitted, screen)


async def test_80x24_is_first_class_one_line_groups_one_header_a_filter_bar_in_place(lab):
    """At 80x24 group names wrapped onto two lines, a filtered list printed a group's
    header twice, and the 3-row filter box stayed on every view until Esc (#26)."""
    lab.write_text(lab.read_text().replace('group = "Tiny"', 'group = "Few labels (Gidaris '
                                                             'et al. Fig. 5b)"') + """
[sweep.lrs]
title = "Learning rates"
group = "Few labels (Gidaris et al. Fig. 5b)"
base = "scratch"
axes = { lr = [0.01, 0.1] }
""")
    app = RotundaApp(lab, gpu=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 1)
        table = app.query_one("#exp-table")
        titles = [k.value for k in table.rows if k.value.startswith(experiments_view.GROUP)]
        assert len(titles) == 1  # the experiments and the sweep under one header
        assert all(table.rows[k].height == 1 for k in table.rows)
        title = str(table.get_row(titles[0])[0])
        assert title.endswith("…") and title.startswith("Few labels")
        await pilot.press("slash", *"lr")
        box = app.query_one("#filter")
        assert box.display and box.region.height == 1
        titles = [k.value for k in table.rows if k.value.startswith(experiments_view.GROUP)]
        assert len(titles) == 1 and "sweep:lrs" in [k.value for k in table.rows]
        await pilot.press("enter", "4")  # Compare: the filter is not about it
        assert not box.display
        await pilot.press("1")
        assert box.display and box.value == "lr"  # back where it filters, still filtering
