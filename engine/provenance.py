"""Where a run's figures came from: provenance.json (and code.patch) written at the start
of every run: the command, the code's git commit and uncommitted diff, the software and
the machine, the seed, and a fingerprint of the data as read. `engine diff` and `engine
rerun` read it back. Torch is imported only by environment(), in the training process.
"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from . import rundir as rd

PROVENANCE = "provenance.json"
PATCH = "code.patch"
PROJECT = Path(__file__).resolve().parent.parent  # the folder holding engine/


def _git(cwd: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(folder: Path) -> tuple[dict, str]:
    """({repo, commit, dirty}, the uncommitted diff against HEAD) of the git repository
    holding `folder`; commit None (and no diff) outside a repository or without git."""
    folder = Path(folder)
    top = _git(folder, "rev-parse", "--show-toplevel")
    commit = _git(folder, "rev-parse", "HEAD")
    if not top or not commit:
        return {"repo": None, "commit": None, "dirty": None}, ""
    status = _git(folder, "status", "--porcelain", "--untracked-files=no") or ""
    patch = _git(folder, "diff", "HEAD", "--binary") or "" if status.strip() else ""
    # the patch's hash tells apart two dirty trees on the same commit
    return {"repo": top.strip(), "commit": commit.strip(), "dirty": bool(status.strip()),
            "patch_sha1": hashlib.sha1(patch.encode()).hexdigest() if patch else None}, patch


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
    import torch
    import torchvision

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
           "cudnn": (torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
                     else None),
           "host": socket.gethostname(), "platform": platform.platform(),
           "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "device": str(device)}
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


def write(run_dir: Path, s, device, data, config_file: str | None) -> dict:
    """provenance.json (and code.patch when the project's tree is dirty)."""
    code, patch = git_state(PROJECT)
    record = {"written": rd.now_iso(), "command": [sys.executable, *sys.argv],
              "code": code, "environment": environment(device), "seed": s.seed,
              "data": fingerprint(data)}
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


def differences(old: dict, new: dict) -> list[str]:
    """One line for each way a rerun's code, environment or data differs from the
    original's provenance."""
    out = []
    a, b = old.get("code") or {}, new.get("code") or {}
    if (a.get("commit"), a.get("patch_sha1")) != (b.get("commit"), b.get("patch_sha1")):
        out.append(f"code differs: commit {describe_code(a)} then, {describe_code(b)} now")
    env_a, env_b = old.get("environment") or {}, new.get("environment") or {}
    keys = [k for k in ("python", "torch", "torchvision", "cuda", "cudnn", "gpu", "driver",
                        "cpu") if env_a.get(k) != env_b.get(k)]
    if keys:
        out.append("environment differs: " + "; ".join(
            f"{k} {env_a.get(k)} then, {env_b.get(k)} now" for k in keys))
    if (old.get("data") or {}).get("hash") != (new.get("data") or {}).get("hash"):
        out.append(f"data differs: fingerprint {(old.get('data') or {}).get('hash')} then, "
                   f"{(new.get('data') or {}).get('hash')} now")
    return out


def describe_code(code: dict) -> str:
    if not code.get("commit"):
        return "none (not a git repository)"
    return code["commit"][:10] + (f" with uncommitted changes {code['patch_sha1'][:8]}"
                                  if code.get("patch_sha1") else
                                  " with uncommitted changes" if code.get("dirty") else "")
