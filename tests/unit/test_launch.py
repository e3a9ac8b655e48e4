"""The executor seam: a run records which executor ran it and its job id, and "is it
alive" and "cancel" are asked of that executor, with real processes and signals."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, env, wait_until, write_lab
from makers import write_run

from engine import launch
from engine.core import rundir as rd
from engine.core.config import load
from engine.core.errors import ConfigError, RunError
from engine.launch.local import hostname, process_start_time


def _run_dir(tmp_path, status):
    return write_run(tmp_path / "runs", "exp", "20261125-000000-abcd", status=status)


def test_identity_names_the_executor_and_job():
    me = launch.current().identity()
    assert me["executor"] == "local" and me["job_id"] == str(os.getpid())
    assert me["host"] == hostname() and me["pid_start"]


def test_a_live_job_runs_a_killed_one_is_lost_and_another_hosts_is_unknown(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = {"state": "running", "executor": "local", "job_id": str(proc.pid),
                  "pid": proc.pid, "host": hostname(), "pid_start": process_start_time(proc.pid)}
        run_dir = _run_dir(tmp_path, status)
        assert launch.load_run(run_dir).state == "running"
        assert launch.load_run(run_dir).status["executor"] == "local"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert launch.load_run(run_dir).state == "lost"
        assert rd.load_run(run_dir).state == "running"  # read without a liveness check
        (run_dir / rd.STATUS).write_text(json.dumps({**status, "host": "elsewhere"}))
        assert launch.is_alive(launch.load_run(run_dir).status) is None
        assert launch.load_run(run_dir).state == "running"  # cannot be told from here
        with pytest.raises(RunError, match="on elsewhere, not on this host"):
            launch.cancel(run_dir)
    finally:
        proc.kill()


def test_cancel_sends_sigterm_to_the_job(tmp_path):
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    run_dir = _run_dir(tmp_path, {"state": "running", "executor": "local", "pid": proc.pid,
                                  "job_id": str(proc.pid), "host": hostname(),
                                  "pid_start": process_start_time(proc.pid)})
    assert "sent SIGTERM" in launch.cancel(run_dir)
    assert proc.wait(timeout=10) == 42
    (run_dir / rd.STATUS).write_text(json.dumps({"state": "done"}))
    with pytest.raises(RunError, match="is done, not running"):
        launch.cancel(run_dir)


def test_executor_is_validated_in_the_lab_table(tmp_path):
    path = write_lab(tmp_path, '[lab]\nexecutor = "slurmm"\n[experiment.a]\n')
    with pytest.raises(ConfigError, match=r"experiments.toml:2: \[lab\] executor = 'slurmm' "
                                          "is not one of local"):
        load(path)
    with pytest.raises(RunError, match="unknown executor 'nope'"):
        launch.get("nope")


def test_the_local_queue_hands_out_one_cpu_slot_at_a_time(tmp_path):
    """Two real processes wait for the single CPU slot; the second starts only after the
    first exits (the kernel drops its flock), however the first ends."""
    runs = tmp_path / "runs"
    code = ("import sys, time, json, pathlib\n"
            "from engine import launch\nfrom engine.core import rundir as rd\n"
            "d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True)\n"
            "rd.atomic_write_json(d / rd.STATUS, {'state': 'queued', 'queued_at': float(sys.argv[2]),"
            " **launch.current().identity()})\n"
            "launch.current().wait_for_slot({'per_gpu': 1, 'cpu': 1}, pathlib.Path(sys.argv[3]), d, 'cpu')\n"
            "print('started', time.time(), flush=True)\n"
            "time.sleep(float(sys.argv[4]))\n")
    first = subprocess.Popen([sys.executable, "-c", code, runs / "e" / "a", "1", runs, "3"],
                             cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().startswith("started")
    second = subprocess.Popen([sys.executable, "-c", code, runs / "e" / "b", "2", runs, "0"],
                              cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    wait_until(lambda: (rd.read_json(runs / "e" / "b" / rd.STATUS) or {}).get("waiting_for"),
               "the second to wait for the slot")
    # a negative (it must not start while the first holds the slot): it asks every 0.5 s,
    # so 1.5 s is three refusals
    time.sleep(1.5)
    assert second.poll() is None  # still waiting for the slot
    first.send_signal(signal.SIGKILL)
    first.wait()
    line = second.stdout.readline()
    assert line.startswith("started") and second.wait(timeout=20) == 0


def _children() -> dict[int, str]:
    """This process's children and their states, from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                out[int(d)] = fields[0]
    return out


def test_a_launcher_keeps_no_defunct_children(tmp_path):
    """The app launches runs and lives on: a job that ends is reaped, not left <defunct>."""
    before = set(_children())
    out = launch.get("local").submit(["--help"], tmp_path / "runs", ROOT, "tag")
    wait_until(lambda: "usage:" in out.read_text(), "the job's output")
    # a zombie would show as state Z, and stay
    wait_until(lambda: not {p: s for p, s in _children().items() if p not in before},
               "no child left behind")
