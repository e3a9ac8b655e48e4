"""Each NVIDIA GPU's memory and utilisation through NVML, with a short memory history."""
from __future__ import annotations

from dataclasses import dataclass

HISTORY = 20  # readings kept for the GPU line's sparkline


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    used_mb: float
    total_mb: float
    util: int
    history: tuple  # memory used / total, oldest first


class GpuMonitor:
    """Reads NVML from the watcher's thread; says why when there is no GPU to read."""

    def __init__(self, enabled: bool = True):
        self.handles, self.error = [], None
        self._history: dict[int, list[float]] = {}
        if not enabled:
            self.error = "GPU readings off"
            return
        try:
            import pynvml
        except ImportError:
            self.error = "no NVIDIA GPU (pynvml is not installed)"
            return
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:  # no driver: the app works without GPUs
            self.error = f"no NVIDIA GPU ({type(exc).__name__})"
            return
        if not self.handles:
            self.error = "no NVIDIA GPU on this machine"

    def read(self) -> tuple[Gpu, ...] | None:
        """None without GPUs (then `error` says why)."""
        if not self.handles:
            return None
        return tuple(self._read_one(i, h) for i, h in enumerate(self.handles))

    def _read_one(self, index: int, handle) -> Gpu:
        nvml = self._nvml
        try:
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
            name = nvml.nvmlDeviceGetName(handle)
        except nvml.NVMLError as exc:  # one GPU failing to answer says so in its slot
            name, used, total, util = f"error: {exc}", 0.0, 0.0, 0
        else:
            name = name.decode() if isinstance(name, bytes) else name
            used, total = mem.used / 2**20, mem.total / 2**20
        hist = self._history.setdefault(index, [])
        hist.append(used / max(1.0, total))
        del hist[:-HISTORY]
        return Gpu(index, name, used, total, util, tuple(hist))
