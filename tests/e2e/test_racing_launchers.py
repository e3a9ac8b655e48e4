"""Racing launchers (#16): many launchers at one instant, one CPU slot. Every run starts
once, none is lost, they start in ticket order one at a time, and a queued run killed
with SIGKILL holds up nobody."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY, engine, env, wait_until, write_lab

from engine import launch as executors
from engine.core import rundir as rd

# One CPU slot; a run that trains in well under a second, so that ten of them in a row
# cost mostly their processes' start (about 5 s each on two cores).
LAB = TINY + """
[lab]
runs_on_cpu = 1

[experiment.quick]
title = "Quick"
group = "Tiny"
model = "lenet"
epochs = 2
synthetic_train = 64
synthetic_test = 32
"""

# The app's launch path without the UI: ExperimentsView.start calls launch_detached with
# the config and runs folder of its Lab. A real app process cannot be made to press Enter
# at a given instant, so this process loads the lab as the app does, waits at the
# barrier, and calls what Enter calls, N times; each launch prints when it was called,
# when it returned and its run id.
APP = """
import os, sys, time
from engine.runs.detached import launch_detached
from engine.live.lab import Lab
lab = Lab(sys.argv[1]); lab.refresh()
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
for _ in range(int(sys.argv[3])):
    t0 = time.time()
    run_id, _ = launch_detached(lab.config, "quick", [], lab.runs_dir)
    print(t0, time.time(), run_id, flush=True)
"""

# The CLI: N `python -m engine launch` back to back, once the barrier opens.
CLI = """
echo ready
while [ ! -e "$2" ]; do sleep 0.001; done
for i in $(seq "$4"); do
    t0=$(date +%s.%N)
    out=$("$3" -m engine launch quick --yes --config "$1") || exit 1
    echo "$t0 $(date +%s.%N) $(basename "${out%% (early*}")"
done
"""


@pytest.fixture
def lab(tmp_path):
    return write_lab(tmp_path, LAB)


def _runs(lab):
    return rd.list_runs(lab.parent / "runs", "quick")


# (app-path launchers, CLI launchers, launches each): twenty launchers started together
# behind `-m full`; by default five, two launches each
SIZES = [pytest.param(10, 10, 1, marks=pytest.mark.full, id="twenty"),
         pytest.param(2, 3, 2, id="five")]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("apps, clis, each", SIZES)
def test_launchers_at_one_instant_one_slot_start_once_in_ticket_order(lab, apps, clis, each):
    go, n = lab.parent / "go", (apps + clis) * each
    launchers = [subprocess.Popen([sys.executable, "-c", APP, str(lab), str(go), str(each)],
                                  cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
                 for _ in range(apps)]
    launchers += [subprocess.Popen(["bash", "-c", CLI, "cli", str(lab), str(go),
                                    sys.executable, str(each)], cwd=lab.parent, env=env(),
                                   stdout=subprocess.PIPE, text=True) for _ in range(clis)]
    for p in launchers:  # everyone set up and spinning on the barrier
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    t0 = time.time()
    said = [p.communicate(timeout=300)[0] for p in launchers]
    assert [p.returncode for p in launchers] == [0] * len(launchers), said
    calls = [line.split() for text in said for line in text.splitlines()]
    assert len(calls) == n, said
    wait_until(lambda: len(_runs(lab)) == n
               and all(r.state in rd.FINAL_STATES for r in _runs(lab)), f"{n} runs to end",
               timeout=1200)
    took = time.time() - t0
    runs = _runs(lab)
    assert [r.state for r in runs] == ["done"] * n, [(r.run_id, r.status) for r in runs]
    # the race closed: a launch that returned before another was called has the lower
    # ticket (its ticket is taken before launch returns, not by the process it starts)
    ticket = {r.run_id: r.status["ticket"] for r in runs}
    for a_start, a_end, a in calls:
        for b_start, _, b in calls:
            if float(a_end) < float(b_start):
                assert ticket[a] < ticket[b], (a, b, ticket)
    for r in runs:  # each started once: one model line and one done line in its log
        log = (r.path / rd.LOG).read_text()
        assert log.count(" model: lenet") == 1 and log.count(" done: ") == 1, log
    tickets = sorted(r.status["ticket"] for r in runs)
    assert tickets == list(range(1, n + 1))
    by_ticket = sorted(runs, key=lambda r: r.status["ticket"])
    starts = [r.status["segment_start"] for r in by_ticket]
    assert starts == sorted(starts) and len(set(starts)) == n, \
        [(r.status["ticket"], r.status["segment_start"]) for r in by_ticket]
    for before, after in zip(by_ticket, by_ticket[1:]):  # one slot: never two at once
        # (ended is whole seconds, cut down, so it is never later than the true end)
        assert rd.parse_iso(before.status["ended"]) <= after.status["segment_start"]
    print(f"\n{n} runs through one slot: {took:.1f}s from the barrier to the last done")


# A run made (its ticket taken) that waits a moment before it asks for a slot, as a
# launcher descheduled between the two would: the slot's check must still count it.
SLOW_TO_ASK = """
import sys, time
from engine import launch
from engine.core.config import load
from engine.runs.create import create_run
from engine.runs.execute import _slots
cfg = load(sys.argv[1]); runs = cfg.runs_dir()
run_dir, s = create_run(cfg, "quick", [], runs)
print("made", flush=True)
time.sleep(float(sys.argv[2]))
launch.current().wait_for_slot(_slots(cfg, s), runs, run_dir, s.device)
print(time.time(), flush=True)
time.sleep(float(sys.argv[3]))
"""


@pytest.mark.timeout(900)
def test_a_run_made_but_not_yet_waiting_keeps_its_place(lab):
    """Before tickets, a run counted in the queue only once it wrote waiting_for: one made
    a moment earlier but not yet asking was passed by a later one."""
    def start(pause, hold):
        return subprocess.Popen([sys.executable, "-c", SLOW_TO_ASK, str(lab), str(pause),
                                 str(hold)], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                text=True)
    first = start(2.0, 1.0)
    assert first.stdout.readline().strip() == "made"
    second = start(0.0, 0.0)
    assert second.stdout.readline().strip() == "made"
    first_at, second_at = (float(p.stdout.readline()) for p in (first, second))
    assert first.wait(timeout=30) == second.wait(timeout=30) == 0
    assert first_at < second_at


@pytest.mark.timeout(900)
def test_a_queued_run_killed_leaks_no_slot_and_shows_lost(lab):
    """A runs; B and C wait behind it; B's process is SIGKILLed while it waits. C still
    runs after A, and B is lost in `engine status`."""
    def launch(*sets):
        before = {r.run_id for r in _runs(lab)}
        args = ["launch", "quick", "--yes", "--config", lab]
        for s in sets:
            args += ["--set", s]
        engine(*args, check=True)
        wait_until(lambda: {r.run_id for r in _runs(lab)} - before, "the run directory")
        return next(r.path for r in _runs(lab) if r.run_id not in before)

    a = launch("epochs=60")  # about 8 s of training: B and C wait for the slot meanwhile
    wait_until(lambda: rd.load_run(a).state == "running", "A to run")
    b, c = launch(), launch()

    def waiting(d):
        s = rd.read_json(d / rd.STATUS)
        return s["state"] == "queued" and s.get("waiting_for") == "cpu"
    wait_until(lambda: waiting(b) and waiting(c), "B and C to wait for the slot")
    assert rd.load_run(a).state == "running"  # else the kill proves nothing
    status_b = rd.read_json(b / rd.STATUS)
    assert status_b["ticket"] < rd.read_json(c / rd.STATUS)["ticket"]
    os.kill(status_b["pid"], signal.SIGKILL)
    wait_until(lambda: rd.load_run(c).state in rd.FINAL_STATES, "C to end")
    assert rd.load_run(a).state == "done" and rd.load_run(c).state == "done"
    assert executors.load_run(b).state == "lost"
    assert rd.parse_iso(rd.read_json(a / rd.STATUS)["ended"]) <= \
        rd.read_json(c / rd.STATUS)["segment_start"]
    rows = {line.split()[2]: line.split()[0] for line in engine(
        "status", "--config", lab, check=True).stdout.splitlines()
        if line.split()[1:2] == ["quick"]}
    assert rows == {a.name: "done", b.name: "lost", c.name: "done"}
