"""The pieces of a run over several processes that need no process group: each rank's
share of the data, the gpus setting's rules, and the local queue's N-GPU slots (real
processes and flocks; CUDA_VISIBLE_DEVICES names GPUs that need not exist, since a slot
is a lock file)."""
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, engine, env, wait_until

from engine.core import rundir as rd
from engine.core.errors import ConfigError
from engine.core.settings import Settings, apply_overrides
from engine.data.splits import TensorSplit, shard


def _split(n=50):
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return TensorSplit(x, torch.arange(n))


def test_the_ranks_share_each_batch_of_one_permutation():
    split = _split()
    whole = list(split.batches(8, torch.device("cpu"), seed=7, drop_last=True))
    ranks = [list(split.batches(8, torch.device("cpu"), seed=7, drop_last=True, rank=r,
                                world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole) == 6
    for i, (xb, yb) in enumerate(whole):
        assert torch.equal(ranks[0][i][1], yb[0::2]) and torch.equal(ranks[1][i][1], yb[1::2])
        assert torch.equal(ranks[1][i][0], xb[1::2])
    seen = torch.cat([yb for r in ranks for _, yb in r])
    assert len(set(seen.tolist())) == 48  # no image twice in an epoch


def test_shards_in_rank_order_are_the_split():
    split = _split(23)
    parts = [shard(split, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [7, 8, 8]
    assert torch.equal(torch.cat([p.y for p in parts]), split.y)


def test_gpus_rules():
    s = Settings()
    assert apply_overrides(s, ["gpus=2"]).gpus == 2
    with pytest.raises(ConfigError, match="gpus must be at least 1"):
        apply_overrides(s, ["gpus=0"])
    with pytest.raises(ConfigError, match="make it a multiple of 4"):
        apply_overrides(s, ["gpus=4", "batch_size=30"])
    with pytest.raises(ConfigError, match='task = "simclr" keeps heads'):
        apply_overrides(s, ["gpus=2", "task=simclr", "knn_every=1"])


def test_a_bad_gpus_value_is_one_line_and_exit_2(tiny_config):
    proc = engine("run", "scratch", "--config", tiny_config, "--set", "gpus=0")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "gpus must be at least 1" in proc.stderr


HOLD = ("import sys, json, pathlib\n"
        "from engine import launch\nfrom engine.core import rundir as rd\n"
        "d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True)\n"
        "rd.atomic_write_json(d / rd.STATUS, {'state': 'queued', 'queued_at': float(sys.argv[2]),"
        " **launch.current().identity()})\n"
        "try:\n"
        "    dev = launch.current().wait_for_slot({'per_gpu': 1, 'cpu': 1, 'gpus': int(sys.argv[4])},"
        " pathlib.Path(sys.argv[3]), d, 'auto')\n"
        "except Exception as exc:\n"
        "    print('error', exc, flush=True); sys.exit(2)\n"
        "import os\n"
        "rd.update_status(d, state='running')\n"
        "print(dev, os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
        "sys.stdin.read()\n")


def _hold(runs, name, order, gpus):
    e = dict(env(), CUDA_VISIBLE_DEVICES="0,1,2")
    return subprocess.Popen([sys.executable, "-c", HOLD, runs / "e" / name, str(order), runs,
                             str(gpus)], cwd=ROOT, env=e, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_an_n_gpu_run_takes_n_free_gpus_all_or_none(tmp_path):
    runs = tmp_path / "runs"
    a = _hold(runs, "a", 1, 2)
    assert a.stdout.readline().split() == ["0,1", "0,1"]
    b = _hold(runs, "b", 2, 1)
    assert b.stdout.readline().split() == ["2", "2"]
    c = _hold(runs, "c", 3, 2)  # one GPU free of the two it needs: waits, holding none
    wait_until(lambda: (rd.read_json(runs / "e" / "c" / rd.STATUS) or {}).get("waiting_for"),
               "c to wait for its GPUs")
    # negatives (c must not start while short of a GPU): it asks every 0.5 s, so these
    # sleeps are three refusals, then two more
    time.sleep(1.5)
    assert c.poll() is None
    b.communicate("")  # GPU 2 frees: still one short
    time.sleep(1.0)
    assert c.poll() is None
    a.communicate("")
    assert c.stdout.readline().split() == ["0,1", "0,1"]
    c.communicate("")
    too_many = _hold(runs, "d", 4, 4)
    out, _ = too_many.communicate("")
    assert too_many.returncode == 2
    assert out.strip() == "error gpus = 4 but this machine has 3 GPU(s) (0, 1, 2)"
