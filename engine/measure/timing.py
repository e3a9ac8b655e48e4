"""Measured per-layer forward and backward times on the device at hand, against PALEO's
prediction (engine/paleo.py) with the device's own measured matmul FLOP/s and copy
bandwidth, and the platform percent of peak (PPP) that makes the prediction match.

Per layer (engine/flops.py's Spans, the same hooks that attribute FLOPs): a forward
pre-hook and hook on every leaf module mark its forward; the pre-hook and hook of its
output's autograd node mark its backward (a leaf module's forward is one operator:
convolution, linear, batch norm, activation, pooling, so that node is its whole
backward). Marks are perf_counter() on the CPU and CUDA events on a GPU (no
synchronisation per layer: the events time the stream between the marks). The whole pass is measured in separate
iterations with no hooks. Times are medians over the timed steps, float32, the model in
training mode; on CUDA, TF32 is off while timing so that the fp32 peak is the one that
applies.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from functools import partial

import torch

from engine.core.errors import DeviceError
from engine.core.table import TEXT, Table
from engine.measure.flops import NUM, Report, Spans, backward, build, count, forward
from engine.perf import paleo


def us(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds * 1e6:.1f}"


class Clock:
    """Marks on the host clock (CPU) or as CUDA events (GPU); seconds between two marks
    once finish() has waited for the device."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def finish(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1e3 if self.cuda else end - start


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device here (torch sees none)")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"--device must be auto, cpu or cuda (got {name!r})")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {threads} thread{'' if threads == 1 else 's'}"


def _best(clock: Clock, fn, reps: int) -> float:
    fn()
    fn()
    clock.finish()
    times = []
    for _ in range(reps):
        a = clock.mark()
        fn()
        b = clock.mark()
        clock.finish()
        times.append(clock.seconds(a, b))
    return min(times)


def device_figures(device: torch.device) -> dict:
    """The device's achievable figures: fp32 matmul FLOP/s (bf16 too on CUDA) and copy
    bandwidth (bytes read + written per second), best of a few repetitions."""
    clock = Clock(device)
    cuda = device.type == "cuda"
    n = 8192 if cuda else 1024
    out = {"device": device_name(device)}
    for dtype in (torch.float32, torch.bfloat16) if cuda else (torch.float32,):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        secs = _best(clock, partial(torch.matmul, a, b), 3)
        out["matmul_flops" if dtype == torch.float32 else "matmul_flops_bf16"] = 2 * n ** 3 / secs
    size = (1 << 30) if cuda else (64 << 20)
    src = torch.empty(size // 4, device=device)
    src.fill_(1.0)
    dst = torch.empty_like(src)
    out["copy_bytes_per_s"] = 2 * size / _best(clock, lambda: dst.copy_(src), 5)
    out["matmul_n"], out["copy_bytes"] = n, size
    return out


@dataclass
class LayerTime:
    layer: paleo.Layer
    fwd: float | None = None  # measured seconds (median over steps)
    bwd: float | None = None
    pred_fwd: float | None = None  # PALEO at the fitted PPP
    pred_bwd: float | None = None


@dataclass
class TimingResult:
    model: str
    size: int
    batch: int
    device: str
    figures: dict
    layers: list  # [LayerTime]
    whole_fwd: float
    whole_bwd: float
    steps: int
    ppp_fwd: float | None = None
    ppp_bwd: float | None = None
    datasheet: paleo.Device | None = None
    datasheet_ppp: dict = field(default_factory=dict)
    # the PPPs fitted with every leaf layer charged (the "all_layers" count)
    ppp_all_layers: dict = field(default_factory=dict)

    def sum_fwd(self) -> float:
        return sum(t.fwd or 0.0 for t in self.layers)

    def sum_bwd(self) -> float:
        return sum(t.bwd or 0.0 for t in self.layers)

    def to_json(self) -> dict:
        return {
            "model": self.model, "size": self.size, "batch": self.batch,
            "device": self.device, "steps": self.steps, "figures": self.figures,
            "whole_forward_s": self.whole_fwd, "whole_backward_s": self.whole_bwd,
            "sum_of_layers_forward_s": self.sum_fwd(),
            "sum_of_layers_backward_s": self.sum_bwd(),
            "ppp_forward": self.ppp_fwd, "ppp_backward": self.ppp_bwd,
            "ppp_all_layers": self.ppp_all_layers,
            "datasheet": self.datasheet.name if self.datasheet else None,
            "datasheet_ppp": self.datasheet_ppp,
            "layers": [{"name": t.layer.name, "type": t.layer.type,
                        "forward_s": t.fwd, "backward_s": t.bwd,
                        "predicted_forward_s": t.pred_fwd,
                        "predicted_backward_s": t.pred_bwd} for t in self.layers]}


def _measure(model, name, x, clock: Clock, steps: int, warmup: int):
    """(per-layer forward seconds, per-layer backward seconds, whole forward, whole
    backward), each the median over `steps`."""

    def one_pass():
        model.zero_grad(set_to_none=True)
        backward(forward(model, name, x))

    for _ in range(warmup):
        one_pass()
    clock.finish()
    whole_f, whole_b = [], []  # the whole pass first, without hooks
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        a = clock.mark()
        out = forward(model, name, x)
        b = clock.mark()
        backward(out)
        c = clock.mark()
        clock.finish()
        whole_f.append(clock.seconds(a, b))
        whole_b.append(clock.seconds(b, c))
        del out
    per_f: dict = {}
    per_b: dict = {}
    with Spans(model, clock.mark) as spans:
        for _ in range(steps):
            spans.reset()
            one_pass()
            clock.finish()
            step_f, step_b = spans.totals(clock.seconds)
            for into, step in ((per_f, step_f), (per_b, step_b)):
                for n, secs in step.items():
                    into.setdefault(n, []).append(secs)
    return ({n: statistics.median(v) for n, v in per_f.items()},
            {n: statistics.median(v) for n, v in per_b.items()},
            statistics.median(whole_f), statistics.median(whole_b))


def _ideal(layers: list, peak: float, bandwidth: float,
           how: str = "paleo") -> tuple[float, float]:
    """PALEO's forward and backward time of the layers its count `how` charges (the
    paper's conv, linear and pooling by default) at 100% of these figures."""
    return paleo.network_time([t.layer for t in layers], peak, bandwidth, how)


def run_timing(model_name: str, size: int, batch: int, classes: int, device_arg: str,
               steps: int, warmup: int, threads: int = 0) -> TimingResult:
    report: Report = count(model_name, size, batch, classes)  # checks the name and size
    device = resolve_device(device_arg)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(model_name, size, classes, device="cpu").to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        figures = device_figures(device)
        fwd, bwd, whole_f, whole_b = _measure(model, model_name, x, Clock(device),
                                              max(1, steps), max(0, warmup))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    peak, bw = figures["matmul_flops"], figures["copy_bytes_per_s"]
    result = TimingResult(model_name, size, batch, figures["device"], figures,
                          [LayerTime(x, fwd.get(x.name), bwd.get(x.name))
                           for x in report.layers], whole_f, whole_b, max(1, steps))
    ideal_f, ideal_b = _ideal(result.layers, peak, bw)
    result.ppp_fwd = paleo.fit_ppp(ideal_f, whole_f)
    result.ppp_bwd = paleo.fit_ppp(ideal_b, whole_b)
    all_f, all_b = _ideal(result.layers, peak, bw, "all_layers")
    result.ppp_all_layers = {"forward": paleo.fit_ppp(all_f, whole_f),
                             "backward": paleo.fit_ppp(all_b, whole_b)}
    strict = {id(x) for _, x in paleo.counted(report.layers)}
    for i, t in enumerate(result.layers):
        if id(t.layer) not in strict:
            continue  # PALEO's count leaves it out: no prediction
        if result.ppp_fwd:
            t.pred_fwd = paleo.forward_time(t.layer, peak, bw, result.ppp_fwd)
        if result.ppp_bwd:
            t.pred_bwd = paleo.backward_time(t.layer, peak, bw, result.ppp_bwd, i == 0)
    sheet = paleo.match_device(figures["device"]) if device.type == "cuda" else None
    if sheet is not None:
        sheet_f, sheet_b = _ideal(result.layers, sheet.fp32, sheet.bandwidth)
        result.datasheet = sheet
        result.datasheet_ppp = {
            "forward": paleo.fit_ppp(sheet_f, whole_f),
            "backward": paleo.fit_ppp(sheet_b, whole_b),
            "matmul_of_peak": figures["matmul_flops"] / sheet.fp32,
            "copy_of_peak": figures["copy_bytes_per_s"] / sheet.bandwidth}
    return result


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def timing_table(r: TimingResult) -> Table:
    t = Table(f"Time per layer, measured and PALEO: {r.model} at {r.size}x{r.size}, "
              f"batch {r.batch}, on {r.device}", [
                  ("Layer", TEXT), ("Type", TEXT), ("Fwd us", NUM), ("PALEO fwd us", NUM),
                  ("Bwd us", NUM), ("PALEO bwd us", NUM)])
    for x in r.layers:
        t.rows.append([x.layer.name, x.layer.type, us(x.fwd), us(x.pred_fwd), us(x.bwd),
                       us(x.pred_bwd)])
    pred_f = sum(x.pred_fwd or 0.0 for x in r.layers)
    pred_b = sum(x.pred_bwd or 0.0 for x in r.layers)
    t.rows.append(["sum of layers", "", us(r.sum_fwd()), us(pred_f), us(r.sum_bwd()),
                   us(pred_b)])
    t.rows.append(["whole pass (no hooks)", "", us(r.whole_fwd), None, us(r.whole_bwd), None])
    t.whole = {"Layer"}
    f = r.figures
    bf16 = (f", bf16 {f['matmul_flops_bf16'] / 1e9:,.1f} GFLOP/s"
            if "matmul_flops_bf16" in f else "")
    t.notes += [
        (f"device figures (measured): fp32 matmul {f['matmul_flops'] / 1e9:,.1f} GFLOP/s "
         f"(n={f['matmul_n']}){bf16}; copy {f['copy_bytes_per_s'] / 1e9:,.1f} GB/s "
         f"(read + write); medians of {r.steps} steps"),
        (f"fitted PPP (PALEO at these figures matches the whole pass): forward "
         f"{_pct(r.ppp_fwd)}, backward {_pct(r.ppp_bwd)}; PALEO columns are at those "
         "PPPs, so each sums to the whole pass; PALEO's count: conv, linear and pooling "
         "layers only (the others show -)"),
        (f"with every leaf layer charged (BatchNorm, activations too): PPP forward "
         f"{_pct(r.ppp_all_layers.get('forward'))}, backward "
         f"{_pct(r.ppp_all_layers.get('backward'))}" if r.ppp_all_layers else ""),
        (f"sum of layers / whole pass: forward {r.sum_fwd() / r.whole_fwd:.2f}, backward "
         f"{r.sum_bwd() / r.whole_bwd:.2f}" if r.whole_fwd and r.whole_bwd else ""),
    ]
    if r.datasheet is not None:
        d = r.datasheet_ppp
        t.notes.append(
            f"against the {r.datasheet.name} datasheet ({r.datasheet.fp32 / 1e12:g} TFLOP/s "
            f"fp32, {r.datasheet.bandwidth / 1e9:,.0f} GB/s): PPP forward "
            f"{_pct(d['forward'])}, backward {_pct(d['backward'])}; the matmul reached "
            f"{_pct(d['matmul_of_peak'])} of peak, the copy {_pct(d['copy_of_peak'])}")
    t.notes.append(
        "Why the sum of layers differs from the whole pass: the layer timings add a hook "
        "(and on a GPU an event) per layer and miss the work outside leaf modules "
        "(residual additions, concatenations, flatten); on a GPU the whole pass overlaps "
        "each kernel's launch with the previous kernel, which per-layer synchronisation "
        "(as in Lu et al.'s tables) serialises, so small layers measure their launch "
        "latency; a framework may also fuse kernels or cuDNN pick other algorithms "
        "when run whole.")
    t.notes = [n for n in t.notes if n]
    return t
