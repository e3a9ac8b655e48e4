"""provenance.json written at the start of every run: the command, the code's git commit
and uncommitted diff, the software and the machine, the seed, and a fingerprint of the
data as read (engine/core/provenance.py reads it back)."""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys
from pathlib import Path

import torch
import torchvision

from engine.core import rundir as rd
from engine.core.provenance import PATCH, PROJECT, PROVENANCE, git_state


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device) -> dict:
    """Software versions and the machine the run trains on."""
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
           "cudnn": (torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
                     else None),
           "host": socket.gethostname(), "platform": platform.platform(),
           "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "device": str(device),
           # what the run set for itself (step.configure_backends)
           "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if getattr(device, "type", "") == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_mb=props.total_memory // 2**20,
                   driver=_driver())
    return env


def _driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # no NVML: the versions above still say which CUDA
        return None


def fingerprint(data) -> dict:
    """Where the data was read from, the split sizes, and a content hash over every image
    and label (blake2b over the uint8 tensors: about a second for CIFAR-10), so that two
    copies of a dataset match and a folder with one image changed does not. Splits
    streamed from a file (HDF5) hash a fixed sample of rows and the file's size."""
    h = hashlib.blake2b(digest_size=16)
    sizes = {}
    for name, split in data.splits().items():
        sizes[name] = len(split)
        h.update(name.encode())
        x = getattr(split, "x", None)
        if x is not None:
            h.update(x.cpu().contiguous().numpy().tobytes())
        else:  # an HDF5 split: rows spread over the file, and its size
            h.update(str(split.path.stat().st_size).encode())
            h.update(str(split.rows[:: max(1, len(split.rows) // 64)].tolist()).encode())
        labels = split.labels()
        if labels is not None:
            h.update(labels.cpu().contiguous().numpy().tobytes())
    return {"source": data.source, "classes": len(data.classes), "sizes": sizes,
            "hash": h.hexdigest()}


def write(run_dir: Path, s, device, data, config_file: str | None,
          hosts: tuple = ()) -> dict:
    """provenance.json (and code.patch when the project's tree is dirty); `hosts`: each
    rank's machine, for a run over several processes."""
    code, patch = git_state(PROJECT)
    record = {"written": rd.now_iso(), "command": [sys.executable, *sys.argv],
              "code": code, "environment": environment(device), "seed": s.seed,
              "data": fingerprint(data)}
    if hosts:
        record["world"] = {"size": len(hosts), "hosts": list(hosts)}
    if config_file:
        where = Path(config_file).resolve().parent
        cfg, cfg_patch = git_state(where)
        if cfg["repo"] != code["repo"]:
            record["config_code"] = cfg
            patch += cfg_patch
    if patch:
        rd.atomic_write_text(Path(run_dir) / PATCH, patch)
    rd.atomic_write_json(Path(run_dir) / PROVENANCE, record)
    return record
