"""The connection drops (#16): the app runs in a tmux session, launches three runs with
one CPU slot from the keyboard (one running, two queued), and the session is killed as a
dropped SSH connection would kill it (SIGHUP to the app). The runs, launched by the app
but each in its own session, finish one after another; a new app shows them done."""
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, TINY, app_until, wait_until, write_lab

from engine.core import rundir as rd
from engine.launch.local import process_alive, process_start_time
from tui.app import RotundaApp

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# One experiment (the table's first row, selected when the app opens), one CPU slot, and
# runs of about 6 s of training each: long enough to catch one running and two queued.
LAB = TINY.split("[experiment.rot]")[0] + """
[lab]
runs_on_cpu = 1

[experiment.quick]
title = "Quick"
group = "Tiny"
model = "lenet"
epochs = 40
synthetic_train = 64
synthetic_test = 32
"""


@pytest.mark.timeout(900)
async def test_killed_terminal_runs_finish_queue_moves_new_app_reattaches(tmp_path):
    cfg = write_lab(tmp_path, LAB)
    runs_dir = tmp_path / "runs"
    # a private tmux server (its own socket, no user config) that exits with its session
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "app"], text=True,
                              capture_output=True).stdout

    subprocess.run([*tmux, "new-session", "-d", "-s", "app", "-x", "200", "-y", "50",
                    "-c", str(tmp_path), "env", f"PYTHONPATH={ROOT}", sys.executable, "-m",
                    "tui", "--config", str(cfg), "--no-gpu"], check=True)
    try:
        app_pid = int(subprocess.run([*tmux, "list-panes", "-t", "app", "-F",
                                      "#{pane_pid}"], text=True, capture_output=True,
                                     check=True).stdout)
        app_start = process_start_time(app_pid)
        wait_until(lambda: "quick" in screen() and "Launch" in screen(), "the app")
        for n in (1, 2, 3):  # Enter launches the selected experiment; with one going,
            subprocess.run([*tmux, "send-keys", "-t", "app", "Enter"], check=True)
            # once the app has seen the run before, it asks first, and y launches another
            if wait_until(lambda: ("asked" if "Launch another?" in screen() else
                                   len(rd.list_runs(runs_dir, "quick")) == n),
                          f"run {n} or the question") == "asked":
                subprocess.run([*tmux, "send-keys", "-t", "app", "y"], check=True)
            wait_until(lambda: len(rd.list_runs(runs_dir, "quick")) == n, f"run {n}")

        def one_running_two_queued():
            runs = rd.list_runs(runs_dir, "quick")
            return sorted(r.state for r in runs) == ["queued", "queued", "running"] and all(
                r.status.get("waiting_for") == "cpu" for r in runs if r.state == "queued")
        wait_until(one_running_two_queued, "one run running and two queued")
        runs = rd.list_runs(runs_dir, "quick")
        for r in runs:  # the app launched them: each run's process is the app's child
            with open(f"/proc/{r.status['pid']}/stat") as f:
                assert int(f.read().rsplit(")", 1)[1].split()[1]) == app_pid
        subprocess.run([*tmux, "kill-session", "-t", "app"], check=True)
        wait_until(lambda: not process_alive(app_pid, app_start), "the app to die")
        assert one_running_two_queued()  # the hang-up stopped none of them
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)

    wait_until(lambda: all(r.state in rd.FINAL_STATES for r in rd.list_runs(runs_dir)),
               "the runs to end")
    runs = sorted(rd.list_runs(runs_dir, "quick"), key=lambda r: r.status["ticket"])
    assert [r.state for r in runs] == ["done"] * 3
    for before, after in zip(runs, runs[1:]):  # the queue moved on, one at a time
        assert rd.parse_iso(before.status["ended"]) <= after.status["segment_start"]

    app = RotundaApp(cfg, gpu=False, poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: len(app.snapshot.rows) >= 3, "the three runs in the app")
        assert sorted((r.run_id, r.state) for r in app.snapshot.rows) == \
            sorted((r.run_id, "done") for r in runs)
