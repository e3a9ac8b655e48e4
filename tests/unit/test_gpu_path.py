"""The GPU path's logic, executed on the CPU (#28): the effective precision, memory format
and compile decision; a compiled bf16 channels_last run; host syncs per step; rotation,
EMA and jigsaw without per-step copies or masks; NVML readings mapped through
CUDA_VISIBLE_DEVICES (with recorded NVML answers: the mapping is under test, not the
driver); the local launcher's GPU list; LOCAL_RANK."""
import math
import time

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from engine import tasks
from engine.core import rundir as rd
from engine.core.errors import ConfigError, DeviceError
from engine.core.files import read_json, read_jsonl
from engine.core.settings import Settings, apply_overrides
from engine.launch import local
from engine.live.gpu import GpuMonitor, cuda_visible
from engine.live.watcher import run_row
from engine.tasks.rotation import rotate_batch
from engine.train import distributed, loop
from engine.train.execute import execute
from engine.train.optim import Ema
from engine.train.step import decide
from tui.views.run import run_title

CPU = torch.device("cpu")
TINY = ['dataset="synthetic"', "synthetic_train=96", "synthetic_test=32", "image_size=16",
        'device="cpu"', "epochs=2", "batch_size=16", 'optimizer="adam"', "lr=0.002",
        "warmup_epochs=0", "log_every=2", "augment=\"crop_flip\""]


def _settings(*extra):
    return apply_overrides(Settings(), [*TINY, *extra])


# ------------------------------------------------------------------ the decision
def test_auto_is_fast_on_the_cpu_and_true_asks_for_it_anywhere():
    eff = decide(_settings(), CPU)
    assert (eff.precision, eff.memory_format, eff.compiled) == ("fp32", "contiguous", False)
    eff = decide(_settings("amp=true", "channels_last=true", "compile=true"), CPU)
    assert eff.record() == {"precision": "bf16", "memory_format": "channels_last",
                            "compiled": True, "fallbacks": []}
    with pytest.raises(ConfigError, match='amp must be "auto", true or false'):
        _settings("amp=1")
    with pytest.raises(ConfigError, match="is not one of auto, true, false"):
        _settings('channels_last="yes"')


def test_bf16_below_compute_capability_8_is_refused_when_asked_and_recorded_when_auto(
        monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    gpu = torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="amp = true: bf16 needs compute capability 8.0, "
                                          "Tesla T4 has 7.5"):
        decide(_settings("amp=true"), gpu)
    eff = decide(_settings(), gpu)
    assert eff.precision == "fp32" and eff.memory_format == "channels_last"
    assert eff.fallbacks == ("bf16 needs compute capability 8.0, Tesla T4 has 7.5: fp32",)


# ------------------------------------------------------------------ a compiled run
@pytest.mark.slow
def test_a_cpu_run_with_amp_channels_last_and_compile_uses_them_and_compiles_once(tmp_path):
    """The demo's task (rotation, 4x batches) compiled by inductor on the CPU: one frame,
    one graph, no graph break and no recompile over two epochs, bf16 and channels_last
    recorded as what ran, finite losses."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    s = _settings('task="rotation"', "amp=true", "channels_last=true", "compile=true",
                  "image_size=32", 'optimizer="sgd"', "lr=0.05")
    state = execute(tmp_path, s, echo=False)
    assert state == "done", (tmp_path / "log.txt").read_text()[-2000:]
    status = read_json(tmp_path / "status.json")
    assert status["effective"] == {"precision": "bf16", "memory_format": "channels_last",
                                   "compiled": True, "fallbacks": []}
    assert counters["frames"]["total"] == counters["frames"]["ok"] == 1
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"] and not counters["recompiles"]
    losses = [m["loss"] for m in read_jsonl(tmp_path / "metrics.jsonl") if m["kind"] == "step"]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert "running eagerly" not in (tmp_path / "log.txt").read_text()


def test_a_compile_failure_is_recorded_as_a_fallback_not_silent(tmp_path, monkeypatch):
    def broken(model, **kw):
        def fails(*a, **k):
            raise RuntimeError("inductor: no compiler\nmore")
        return fails
    monkeypatch.setattr(torch, "compile", broken)
    s = _settings("compile=true", "epochs=1")
    assert execute(tmp_path, s, echo=False) == "done"
    eff = read_json(tmp_path / "status.json")["effective"]
    assert eff["compiled"] is False
    assert eff["fallbacks"] == ["torch.compile failed (RuntimeError: inductor: no compiler)"]
    # the log and the app's Run header say so, in the run's words
    line = "fp32, contiguous, eager; fell back: torch.compile failed (RuntimeError: " \
           "inductor: no compiler)"
    assert "running eagerly" in (tmp_path / "log.txt").read_text()
    row = run_row(rd.load_run(tmp_path), time.time())
    assert row.effective == line
    assert line in run_title(row).plain


# ------------------------------------------------------------------ host syncs per step
READS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


@pytest.mark.parametrize("task", ["classify", "rotation", "jigsaw"])
def test_a_training_step_reads_nothing_back_but_the_logged_loss(tmp_path, monkeypatch, task):
    """Values read from device tensors inside train_one_epoch (each a GPU sync): at most
    the logged loss per log_every steps and the epoch's two sums at its end."""
    count = {"on": False, "n": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            if count["on"]:
                count["n"] += 1
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    epoch = loop.Run.train_one_epoch

    def watched(self, e):
        count["on"] = True
        try:
            return epoch(self, e)
        finally:
            count["on"] = False
    monkeypatch.setattr(loop.Run, "train_one_epoch", watched)
    extra = {"rotation": ['rotation_mode="random"'], "jigsaw": ["image_size=24", "knn_every=2",
                                                               "jigsaw_permutations=10"]}
    # SGD, the default: Adam reads its step counter with .item(), a tensor it keeps on
    # the host on CUDA too (no sync), which the CPU cannot tell apart
    s = _settings(f'task="{task}"', "log_every=3", 'optimizer="sgd"', "lr=0.01",
                  *extra.get(task, []))
    assert execute(tmp_path, s, echo=False) == "done"
    steps = 2 * (96 // 16)
    assert count["n"] <= steps // 3 + 2 * 2, count["n"]


# ------------------------------------------------------------------ per-step copies
def test_random_rotation_selects_without_masks_and_matches_them():
    x = torch.randint(0, 255, (12, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(3)
    out, ks = rotate_batch(x, "random", gen)
    for i in range(len(x)):
        assert torch.equal(out[i], torch.rot90(x[i], int(ks[i]), dims=(1, 2)))


def test_ema_is_averaged_models_average_without_its_counter_copies():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    ema = Ema(model, 0.99)
    now = {}

    def lerp(avg, cur, _n):
        if torch.is_floating_point(avg[0]):
            torch._foreach_lerp_(avg, cur, 1 - now["v"])
        else:
            for a, c in zip(avg, cur):
                a.copy_(c)
    ref = AveragedModel(model, multi_avg_fn=lerp, use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for step in range(6):
        model(torch.randn(4, 3, 6, 6)).sum().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model, step)
        now["v"] = ema.now
        ref.update_parameters(model)
    mine, theirs = ema.averaged.state_dict(), ref.state_dict()
    assert mine.keys() == theirs.keys() and int(mine["n_averaged"]) == 6
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_jigsaw_keeps_its_table_where_the_batches_are():
    s = _settings('task="jigsaw"', "image_size=24", "jigsaw_permutations=10", "knn_every=1")
    task = tasks.build(s)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (4, 3, 24, 24), dtype=torch.uint8)
    task.train_views(x, None, gen)
    table = task.perms
    task.train_views(x, None, gen)
    assert task.perms is table


# ------------------------------------------------------------------ NVML and the GPU list
class NotSupported(Exception):
    pass


class FakeNvml:
    """pynvml's functions answering as a recorded machine: two GPUs in PCI order, the
    second in MIG mode with two slices when `mig`."""

    NVMLError = NotSupported

    def __init__(self, mig=False):
        self.gpus = [{"uuid": "GPU-aaa", "name": "NVIDIA A100", "used": 1 << 30,
                      "total": 40 << 30, "util": 7},
                     {"uuid": "GPU-bbb", "name": "NVIDIA H100", "used": 5 << 30,
                      "total": 80 << 30, "util": 93, "mig": mig}]
        self.slices = [{"uuid": "MIG-s0", "name": "NVIDIA H100 MIG 3g.40gb",
                        "used": 2 << 30, "total": 40 << 30, "util": None},
                       {"uuid": "MIG-s1", "name": "NVIDIA H100 MIG 3g.40gb",
                        "used": 3 << 30, "total": 40 << 30, "util": None}]
        self.every = {d["uuid"]: d for d in (*self.gpus, *self.slices)}

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return self.every[uuid]

    def nvmlDeviceGetMigMode(self, h):
        if "mig" not in h:
            raise NotSupported("Not Supported")
        return [int(h["mig"]), int(h["mig"])]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, i):
        if i >= len(self.slices):
            raise NotSupported("Not Found")
        return self.slices[i]

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("Mem", (), {"used": h["used"], "total": h["total"]})()

    def nvmlDeviceGetUtilizationRates(self, h):
        if h["util"] is None:
            raise NotSupported("Not Supported")
        return type("Util", (), {"gpu": h["util"]})()

    def nvmlDeviceGetName(self, h):
        return h["name"].encode()

    def nvmlDeviceGetUUID(self, h):
        return h["uuid"]


def _read(visible, mig=False):
    mon = GpuMonitor(nvml=FakeNvml(mig), visible=visible)
    return mon, mon.read()


def test_the_monitor_reads_the_gpus_cuda_sees_by_index_or_uuid():
    _, gpus = _read("1")
    assert [(g.index, g.name, g.used_mb, g.uuid) for g in gpus] == [
        (0, "NVIDIA H100", 5 * 1024, "GPU-bbb")]  # cuda:0 of this process is GPU 1
    _, gpus = _read("GPU-bbb,GPU-aaa")
    assert [g.uuid for g in gpus] == ["GPU-bbb", "GPU-aaa"]
    _, gpus = _read(None)
    assert [g.name for g in gpus] == ["NVIDIA A100", "NVIDIA H100"]


def test_mig_slices_are_listed_and_unsupported_utilisation_keeps_the_memory():
    _, gpus = _read(None, mig=True)
    assert [g.uuid for g in gpus] == ["GPU-aaa", "MIG-s0", "MIG-s1"]
    assert [(g.used_mb, g.util) for g in gpus[1:]] == [(2048, None), (3072, None)]
    _, gpus = _read("MIG-s1", mig=True)
    assert [(g.index, g.uuid, g.total_mb) for g in gpus] == [(0, "MIG-s1", 40 * 1024)]


def test_cuda_visible_devices_minus_one_hides_every_gpu():
    assert cuda_visible("-1") == [] and cuda_visible("") == []
    assert cuda_visible("0,-1,1") == ["0"] and cuda_visible(None) is None
    mon, gpus = _read("-1")
    assert gpus is None and "CUDA_VISIBLE_DEVICES hides them" in mon.error


def test_the_launcher_hands_out_gpus_from_the_original_list(monkeypatch):
    """A sweep's second point in the same process chooses among every GPU, not only the
    one the first point was given; MIG slices go out by their UUIDs; -1 is none."""
    monkeypatch.setattr(local, "_INHERITED", "0,1,2")
    monkeypatch.setattr(local, "_SET_HERE", [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    local.use_gpus("0")
    assert local.gpu_indices() == ["0", "1", "2"]
    import os
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert local.gpu_indices() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(local, "_SET_HERE", [])
    assert local.gpu_indices(FakeNvml(mig=True)) == ["0", "MIG-s0", "MIG-s1"]


def test_local_rank_picks_the_device_and_never_the_global_rank_on_several_nodes(
        monkeypatch):
    for k in ("LOCAL_RANK", "SLURM_LOCALID", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.from_env().local == 1
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_LOCALID", "2")
    assert distributed.from_env().local == 2
    monkeypatch.delenv("SLURM_LOCALID")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed.from_env().local == 1
