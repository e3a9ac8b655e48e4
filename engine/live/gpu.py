"""Each NVIDIA GPU's memory and utilisation through NVML, with a short memory history.

Imports neither textual nor torch: bench/gpu_session.sh's smoke mode reads it on a machine
without the app's packages. NVML numbers the physical GPUs (in PCI order), torch the
visible ones: `visible_devices` maps CUDA_VISIBLE_DEVICES (indices under
CUDA_DEVICE_ORDER=PCI_BUS_ID, GPU- or MIG- UUIDs) to NVML handles, and lists MIG slices
when nothing narrows the view."""
from __future__ import annotations

import os
from dataclasses import dataclass

HISTORY = 20  # readings kept for the GPU line's sparkline


@dataclass(frozen=True)
class Gpu:
    index: int  # the position torch gives it (cuda:N) in this process
    name: str
    used_mb: float
    total_mb: float
    util: int | None  # None where NVML has no utilisation (MIG slices)
    history: tuple  # memory used / total, oldest first
    uuid: str = ""


def cuda_visible(value: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: None when unset (every device); entries up
    to the first invalid one, so "-1" and "" mean none."""
    if value is None:
        return None
    out = []
    for entry in (e.strip() for e in value.split(",")):
        if entry.isdigit() or entry.startswith(("GPU-", "MIG-")):
            out.append(entry)
        else:  # "-1", "", a typo: CUDA stops here
            break
    return out


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _mig_slices(nvml, handle) -> list:
    """The MIG devices of a GPU in MIG mode, else []."""
    try:
        current, _ = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:  # not a MIG-capable GPU
        return []
    if current != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    out = []
    for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            out.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
        except nvml.NVMLError:  # an empty slot
            continue
    return out


def visible_devices(nvml, visible: str | None) -> list:
    """NVML handles of the devices this process's CUDA sees, in torch's order."""
    entries = cuda_visible(visible)
    if entries is None:
        handles = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            handles.extend(_mig_slices(nvml, h) or [h])
        return handles
    return [nvml.nvmlDeviceGetHandleByIndex(int(e)) if e.isdigit()
            else nvml.nvmlDeviceGetHandleByUUID(e) for e in entries]


class GpuMonitor:
    """Reads NVML from the watcher's thread; says why when there is no GPU to read."""

    def __init__(self, enabled: bool = True, nvml=None, visible: str | None = None):
        self.handles, self.error = [], None
        self._history: dict[int, list[float]] = {}
        if not enabled:
            self.error = "GPU readings off"
            return
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                self.error = "no NVIDIA GPU (pynvml is not installed)"
                return
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._nvml = nvml
        try:
            nvml.nvmlInit()
            self.handles = visible_devices(nvml, visible)
        except nvml.NVMLError as exc:  # no driver: the app works without GPUs
            self.error = f"no NVIDIA GPU ({type(exc).__name__})"
            return
        if not self.handles:
            self.error = ("no GPU visible (CUDA_VISIBLE_DEVICES hides them)"
                          if cuda_visible(visible) is not None else
                          "no NVIDIA GPU on this machine")

    def read(self) -> tuple[Gpu, ...] | None:
        """None without GPUs (then `error` says why)."""
        if not self.handles:
            return None
        return tuple(self._read_one(i, h) for i, h in enumerate(self.handles))

    def _read_one(self, index: int, handle) -> Gpu:
        nvml, uuid = self._nvml, ""
        try:
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = _text(nvml.nvmlDeviceGetName(handle))
        except nvml.NVMLError as exc:  # one GPU failing to answer says so in its slot
            name, used, total, util = f"error: {exc}", 0.0, 0.0, None
        else:
            used, total = mem.used / 2**20, mem.total / 2**20
            try:  # "Not Supported" on a MIG slice: the memory reading stands
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
            except nvml.NVMLError:
                util = None
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except nvml.NVMLError:
                pass
        hist = self._history.setdefault(index, [])
        hist.append(used / max(1.0, total))
        del hist[:-HISTORY]
        return Gpu(index, name, used, total, util, tuple(hist), uuid)
