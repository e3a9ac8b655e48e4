"""Past one box, on a real Slurm of two nodes on this machine (the slurm_nodes fixture:
two slurmd in network namespaces of their own on a bridge the test makes, tests/slurm.py):
one run over both nodes that learns exactly as two processes on one host do, a sweep as
one job array, cancelled as a whole, a run of two nodes resumed on one, and the faults of
one node: its process killed (the run fails, naming the host) or the node lost (Slurm
requeues the job; the run resumes with every epoch once)."""
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import engine, wait_until, write_lab
from test_slurm import SLURM, launch, slurm

from engine.core import rundir as rd

# one task per node (each node has half this machine's cores); the four-point sweep
# runs two at a time
NODES = SLURM.replace('executor = "slurm"', 'executor = "slurm"\n\n[lab.slurm]\n'
                      'concurrency = 2').replace(
    "axes = { lr = [0.001, 0.002] }", "axes = { lr = [0.001, 0.002, 0.003, 0.004] }")


@pytest.fixture(scope="module")
def slurm_nodes(tmp_path_factory):
    """A Slurm of two nodes, n1 and n2, for this module's tests; torn down at the end,
    failed tests included (skips, with the reason, where it cannot be had)."""
    import slurm as cluster

    root = tmp_path_factory.mktemp("slurm2")
    try:
        conf = cluster.start(root, nodes=2)
    except cluster.Unavailable as exc:
        pytest.skip(f"no two-node Slurm here: {exc}")
    yield conf
    cluster.stop(root)


@pytest.fixture
def lab(slurm_nodes, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_nodes["SLURM_CONF"])
    path = write_lab(tmp_path, NODES)
    yield path
    ours = [r.status.get("array_job") or r.status.get("job_id")
            for r in rd.list_runs(tmp_path / "runs")]
    if ours := [j for j in ours if j]:  # nothing a failed test left holds the nodes
        subprocess.run(["scancel", *ours], capture_output=True)
    healthy()


def healthy() -> None:
    """Every node idle again before the next test: a node that a busy machine's slurmd
    left down or drained (its reason printed) is resumed."""
    def idle():
        states = slurm("sinfo", "-h", "-N", "-o", "%N %T").split("\n")
        sick = [line.split()[0] for line in states if line.split()[1].rstrip("*~#")
                in ("down", "drained", "draining", "drain", "fail")]
        if sick:
            print("resuming", sick, slurm("sinfo", "-h", "-R"))
            subprocess.run(["scontrol", "update", f"NodeName={','.join(sick)}",
                            "State=RESUME"], capture_output=True)
        return not slurm("squeue", "-h") and all(line.split()[1] == "idle"
                                                 for line in states)
    wait_until(idle, "both nodes idle", timeout=120)


def has_trained(status: dict) -> bool:
    """A step or a finished epoch in status.json (a step is written only every few
    seconds, and a fast epoch's end resets it to 0 before then)."""
    return status.get("step", 0) > 0 or status.get("epoch", 0) >= 1


def training(run_dir: Path) -> None:
    """Wait until the run has trained; one that ends first fails at once with its log,
    and one that never starts says what Slurm says."""
    def trained():
        status = rd.read_json(run_dir / rd.STATUS)
        if status.get("state") in rd.FINAL_STATES:
            raise AssertionError(f"the run ended {status['state']} before the test acted on "
                                 f"it:\n{(run_dir / rd.LOG).read_text()[-1200:]}")
        return has_trained(status)
    try:
        wait_until(trained, "a step or an epoch", timeout=240)
    except BaseException:
        print(slurm("squeue", "-h", "-o", "%i %T %r %N"), slurm("sinfo", "-h", "-R"),
              slurm("sinfo", "-h", "-N", "-o", "%N %T"))
        raise


def ended(run_dir):
    wait_until(lambda: rd.load_run(run_dir).state in rd.FINAL_STATES, f"{run_dir.name} to end")
    return rd.load_run(run_dir)


def epochs(run_dir) -> list[dict]:
    return [m for m in rd.read_jsonl(run_dir / rd.METRICS) if m["kind"] == "epoch"]


def job_fields(job: str) -> dict:
    return dict(f.split("=", 1) for f in slurm("scontrol", "show", "job", "--oneliner",
                                               job).split() if "=" in f)


def test_a_two_node_run_is_one_job_that_learns_like_two_processes_on_one_host(lab):
    run_dir = launch(lab, "scratch", "nodes=2")
    run = ended(run_dir)
    assert run.state == "done", (run_dir / rd.LOG).read_text()[-600:]
    job = run.status["job_id"]  # the run records done a moment before its job ends
    wait_until(lambda: job_fields(job)["JobState"] != "RUNNING", f"job {job} to end")
    assert job_fields(job)["NumNodes"] == "2" and job_fields(job)["JobState"] == "COMPLETED"
    assert run.status["processes"] == 2 and run.status["hosts"] == ["n1", "n2"]
    world = rd.read_json(run_dir / "provenance.json")["world"]
    assert world == {"size": 2, "hosts": ["n1", "n2"]}
    two_nodes = epochs(run_dir)
    assert [m["epoch"] for m in two_nodes] == [1, 2, 3]  # written once, by rank 0
    log = (run_dir / rd.LOG).read_text()
    assert "x 2 processes (gloo; batches of 16 per process)" in log
    assert log.count("done:") == 1

    # the same seed as two processes on this host, outside Slurm
    (lab.parent / "local").mkdir()
    local = write_lab(lab.parent / "local", NODES.replace('executor = "slurm"',
                                                          'executor = "local"'))
    engine("run", "scratch", "--config", local, "--set", "gpus=2", "--now", "--quiet",
           check=True)
    one_host = epochs(rd.list_runs(local.parent / "runs", "scratch")[0].path)
    for a, b in zip(two_nodes, one_host, strict=True):
        for key in ("train_loss", "test_loss", "test_acc", "train_acc"):
            assert math.isclose(a[key], b[key], rel_tol=1e-4, abs_tol=1e-6), (key, a, b)


def test_a_sweep_is_one_job_array_and_every_point_ends_done(lab):
    engine("sweep", "lrs", "--detach", "--config", lab, check=True)
    points = rd.list_runs(lab.parent / "runs", "lrs")
    assert len(points) == 4
    array = {p.status["array_job"] for p in points}
    assert len(array) == 1, array
    (job,) = array
    assert sorted(p.status["job_id"] for p in points) == [f"{job}_{i}" for i in range(4)]
    assert job_fields(job).get("ArrayTaskThrottle") == "2"  # [lab.slurm] concurrency
    for p in points:
        run = ended(p.path)
        assert run.state == "done", (p.path / rd.LOG).read_text()[-600:]
        assert [m["epoch"] for m in epochs(p.path)] == [1, 2, 3]
        assert run.status["job_id"] in {f"{job}_{i}" for i in range(4)}
    lrs = sorted(rd.read_config(p.path)["settings"]["lr"] for p in points)
    assert lrs == [0.001, 0.002, 0.003, 0.004]
    # launched again, nothing is left to run: no new job, no new point
    engine("sweep", "lrs", "--detach", "--config", lab, check=True)
    assert len(rd.list_runs(lab.parent / "runs", "lrs")) == 4


def test_cancelling_the_array_cancels_running_and_pending_points(lab):
    engine("sweep", "lrs", "--detach", "--config", lab, "--set", "epochs=200", check=True)
    points = rd.list_runs(lab.parent / "runs", "lrs")
    # two run (concurrency 2) and two wait; cancel once both running ones have a step
    wait_until(lambda: sum(has_trained(rd.read_json(p.path / rd.STATUS)) for p in points)
               == 2, "two points training")
    out = engine("cancel", points[0].path, "--array", "--config", lab, check=True).stdout
    assert "the array's 4 live points (2 pending will not start)" in out
    for p in points:
        assert ended(p.path).state == "cancelled"
    job = points[0].status["array_job"]
    wait_until(lambda: not slurm("squeue", "-h", "--array", "-j", job), f"array {job} gone")


def test_a_run_over_two_nodes_resumes_on_one(lab):
    run_dir = launch(lab, "scratch", "nodes=2", "epochs=60")  # cancelled long before its end
    training(run_dir)
    engine("cancel", run_dir, "--config", lab, check=True)
    assert ended(run_dir).state == "cancelled"
    out = engine("resume", run_dir, "--nodes", "1", "--config", lab, check=True).stdout
    run = rd.load_run(run_dir)
    assert run.state == "done", out
    assert [m["epoch"] for m in epochs(run_dir)] == list(range(1, 61))  # each epoch once
    assert "resume: nodes = 1 from here (was nodes = 2)" in (run_dir / rd.LOG).read_text()
    assert rd.read_config(run_dir)["settings"]["nodes"] == 1


def rank_pid(run_dir: Path, rank: int) -> int | None:
    """The pid of the run's process of that rank (srun's task), wherever its node is."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, NotADirectoryError):
            continue
        if (argv[:3] and argv[1:3] == [b"-m", b"engine"] and str(run_dir).encode() in argv
                and f"SLURM_PROCID={rank}".encode() in env):
            return int(entry.name)
    return None


def test_a_process_killed_on_one_node_fails_the_run_in_one_line_naming_the_host(lab):
    run_dir = launch(lab, "scratch", "nodes=2", "epochs=200")
    training(run_dir)
    os.kill(wait_until(lambda: rank_pid(run_dir, 1), "rank 1's process"), signal.SIGKILL)
    run = ended(run_dir)
    error = run.status["error"]
    assert run.state == "failed", (run_dir / rd.LOG).read_text()[-600:]
    assert error.startswith("rank 1 on n2 was lost (") and "\n" not in error, error
    assert f"failed: {error}" in (run_dir / rd.LOG).read_text()


def test_a_node_lost_mid_run_is_requeued_by_slurm_and_runs_every_epoch_once(lab,
                                                                           slurm_nodes):
    import slurm as cluster

    root = Path(slurm_nodes["SLURM_CONF"]).parent
    run_dir = launch(lab, "scratch", "nodes=2", "epochs=6")
    wait_until(lambda: rd.read_json(run_dir / rd.STATUS).get("epoch", 0) >= 1, "an epoch")
    job = rd.load_run(run_dir).status["job_id"]
    # n2 goes dark: its slurmd dies and the run's process there hangs, so the run cannot
    # end before Slurm finds the node down (SlurmdTimeout) and requeues the job
    os.kill(rank_pid(run_dir, 1), signal.SIGSTOP)
    os.kill(int((root / "slurmd-n2.pid").read_text()), signal.SIGKILL)
    try:
        wait_until(lambda: job_fields(job).get("Restarts") == "1", "Slurm to requeue the job")
    finally:  # the node comes back (its slurmd ends what was left of the job there)
        cluster.start_node(root, "n2")
    run = ended(run_dir)
    assert run.state == "done", (run_dir / rd.LOG).read_text()[-600:]
    assert [m["epoch"] for m in epochs(run_dir)] == list(range(1, 7))  # each epoch once
    assert run.status["restarts"] == 1 and run.status["hosts"] == ["n1", "n2"]
    assert "resume: from epoch" in (run_dir / rd.LOG).read_text()


def test_nodes_outside_slurm_is_one_line_and_nothing_runs(tmp_path):
    lab = write_lab(tmp_path, NODES.replace('executor = "slurm"', 'executor = "local"'))
    got = engine("launch", "scratch", "--set", "nodes=2", "--config", lab)
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1 and "nodes" in got.stderr
    assert not (tmp_path / "runs").exists() or not rd.list_runs(tmp_path / "runs")
