"""Multiply-adds per layer, counted by PyTorch's own FlopCounterMode on the meta device.

The model is built on the meta device (shapes, no storage, no compute), so any model and
any image size is counted in well under a second. Each leaf module's share (Conv2d,
Linear, BatchNorm2d, ReLU, ...; rows in the order they first ran) is the growth of
FlopCounterMode's running total between marks around the module's forward and around
its output's autograd node in the backward pass (Spans below): FlopCounterMode's own
per-module table is right for the forward pass, but its backward attribution credits a
convolution's gradient to the in-place ReLU after it too (VGG19's leaf rows then summed
to three times the backward total). The same hooks give each layer's output shape and
the bytes it reads and writes. FlopCounterMode counts 2 FLOPs per multiply-add; the
tables report multiply-adds (MACs), the convention of torchvision's published GFLOPS
("_ops").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from engine.core.errors import ConfigError
from engine.core.registry import MODELS
from engine.core.settings import suggest
from engine.core.table import INT, PCT, RATE, TEXT, Table
from engine.models.zoo import build_model
from engine.perf import paleo

NUM = "num"  # a number already formatted as text: analysis.fmt shows it as is, right-aligned

MAC_NOTE = ("MACs: multiply-adds, counted by torch.utils.flop_counter.FlopCounterMode "
            "(which counts FLOPs = 2 x MACs for convolutions and matmuls) and halved, the "
            "convention of torchvision's published GFLOPS; elementwise work (batch norm, "
            "activations, pooling, residual additions) counts zero there and here.")


@dataclass
class Report:
    model: str
    size: int
    batch: int
    classes: int
    layers: list  # [paleo.Layer] in the order they first ran
    flops_fwd: float  # the whole forward pass (FlopCounterMode's "Global")
    flops_bwd: float
    conv_flops_fwd: float  # forward FLOPs of convolution operators
    params: int
    outside_fwd: float = 0.0  # FLOPs run outside every leaf module (functional calls)
    outside_bwd: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def macs_fwd(self) -> float:
        return self.flops_fwd / 2

    @property
    def macs_train(self) -> float:
        """Forward plus backward."""
        return (self.flops_fwd + self.flops_bwd) / 2

    @property
    def conv_share(self) -> float | None:
        return self.conv_flops_fwd / self.flops_fwd if self.flops_fwd else None

    @property
    def activation_bytes(self) -> float:
        return sum(layer.out_bytes for layer in self.layers)

    def to_json(self) -> dict:
        return {
            "model": self.model, "size": self.size, "batch": self.batch,
            "classes": self.classes, "params": self.params,
            "macs_forward": self.macs_fwd, "macs_forward_backward": self.macs_train,
            "gmacs_forward_per_image": self.macs_fwd / self.batch / 1e9,
            "conv_share": self.conv_share, "activation_bytes": self.activation_bytes,
            "macs_outside_leaf_modules": (self.outside_fwd + self.outside_bwd) / 2,
            "layers": [{"name": x.name, "type": x.type, "output": x.shape, "calls": x.calls,
                        "params": x.params, "macs_forward": x.macs_fwd,
                        "macs_backward": x.macs_bwd, "input_bytes": x.in_bytes,
                        "output_bytes": x.out_bytes, "weight_bytes": x.weight_bytes}
                       for x in self.layers]}


def check_model(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}{suggest(name, MODELS)} "
                          f"(models: {', '.join(MODELS)})")


def tensors(value) -> list:
    """Every tensor in a module's inputs or outputs (tuples, lists, dicts, named tuples)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors(v)]
    return []


def nbytes(values) -> int:
    return sum(t.numel() * t.element_size() for t in tensors(values))


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]


def build(name: str, size: int, classes: int, device="meta") -> nn.Module:
    check_model(name)
    if size < 1 or classes < 1:
        raise ConfigError(f"size and classes must be at least 1 (got size {size}, "
                          f"classes {classes})")
    try:
        with torch.device(device):
            return build_model(name, classes, size)
    except (RuntimeError, ValueError) as exc:
        raise too_small(name, size, exc) from exc


def too_small(name: str, size: int, exc: Exception) -> ConfigError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"{name} cannot take {size}x{size} images ({first}); "
                       f"it is meant for {MODELS[name].input_size}x{MODELS[name].input_size}")


def forward(model: nn.Module, name: str, x: torch.Tensor):
    """model(x), with the RuntimeError of a too-small input as one ConfigError line."""
    try:
        return model(x)
    except (RuntimeError, ValueError) as exc:  # ValueError: batch norm over one value
        raise too_small(name, x.shape[-1], exc) from exc


def backward(out) -> None:
    """Backward of the sum of every output."""
    sum(t.float().sum() for t in tensors(out)).backward()


class Spans:
    """Marks around each leaf module's work, forward and backward: `mark()` (a clock's
    time, or FlopCounterMode's running total) is taken in a forward pre-hook and hook,
    and in a pre-hook and hook on the autograd node of the module's output, which runs
    the module's backward (a leaf module's forward is one operator). Node hooks hold
    where a module's full backward hook is refused (a ReLU or a residual addition
    modifying its output in place) and where FlopCounterMode's own module tracking
    credits a convolution's backward to the in-place ReLU after it as well.
    `spans` collects (module name, "fwd" or "bwd", start mark, end mark); `on_forward`
    sees each call's inputs and output."""

    def __init__(self, model: nn.Module, mark, on_forward=None):
        self.leaves = leaf_modules(model)
        self.mark, self.on_forward = mark, on_forward
        self.spans: list = []
        self.claimed: set = set()
        self.started: dict = {}
        self.handles: list = []

    def __enter__(self):
        for n, m in self.leaves:
            self.handles.append(m.register_forward_pre_hook(self._pre(n)))
            self.handles.append(m.register_forward_hook(self._post(n)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def reset(self) -> None:
        self.spans.clear()
        self.claimed.clear()

    def _pre(self, name):
        def hook(module, inputs):
            self.started[name] = self.mark()
        return hook

    def _post(self, name):
        def hook(module, inputs, output):
            self.spans.append((name, "fwd", self.started.pop(name), self.mark()))
            if self.on_forward is not None:
                self.on_forward(name, inputs, output)
            node = next((t.grad_fn for t in tensors(output) if t.grad_fn is not None), None)
            # A module that returns its input (Identity, a view) does not own the node
            # before it: the first module to see a node owns it.
            if node is None or node in self.claimed:
                return
            self.claimed.add(node)
            start: list = []

            def began(grad_outputs):
                start.append(self.mark())

            def ended(grad_inputs, grad_outputs):
                self.spans.append((name, "bwd", start.pop(), self.mark()))
            node.register_prehook(began)
            node.register_hook(ended)
        return hook

    def totals(self, between) -> tuple[dict, dict]:
        """({module: forward sum}, {module: backward sum}) of between(start, end)."""
        out: tuple[dict, dict] = ({}, {})
        for name, phase, a, b in self.spans:
            into = out[0] if phase == "fwd" else out[1]
            into[name] = into.get(name, 0.0) + between(a, b)
        return out


def count(name: str, size: int = 224, batch: int = 1, classes: int = 1000) -> Report:
    """Count one forward and one backward pass of a batch of size x size RGB images."""
    if batch < 1:
        raise ConfigError(f"batch must be at least 1 (got {batch})")
    # Evaluation mode: batch norm then takes a batch of one at 1x1; the counts are the
    # same in both modes (FlopCounterMode counts no batch-norm work).
    model = build(name, size, classes).eval()
    seen: dict[str, dict] = {}

    def record(module_name, inputs, output):
        s = seen.setdefault(module_name, {"order": len(seen), "calls": 0, "in": 0, "out": 0,
                                          "shape": None})
        s["calls"] += 1
        s["in"] += nbytes(inputs)
        s["out"] += nbytes(output)
        outs = tensors(output)
        if s["shape"] is None and outs:
            s["shape"] = "x".join(str(d) for d in outs[0].shape[1:]) or "1"

    x = torch.empty(batch, 3, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    spans = Spans(model, counter.get_total_flops, record)
    with counter, spans:
        out = forward(model, name, x)
        total_fwd = float(counter.get_total_flops())
        conv_fwd = float(sum(v for op, v in counter.get_flop_counts()["Global"].items()
                             if str(op).startswith("aten.convolution")))
        backward(out)
        total_bwd = float(counter.get_total_flops()) - total_fwd
    fwd, bwd = spans.totals(lambda a, b: float(b - a))
    layers = []
    for n, m in sorted(spans.leaves, key=lambda nm: seen.get(nm[0], {"order": 1e9})["order"]):
        s = seen.get(n)
        if s is None:
            continue  # never ran (an auxiliary head, say)
        shape = s["shape"] or "-"
        if s["calls"] > 1:
            shape += f" (x{s['calls']})"
        own = list(m.parameters(recurse=False))
        layers.append(paleo.Layer(n, type(m).__name__, shape, s["calls"],
                                  sum(p.numel() for p in own), fwd.get(n, 0.0),
                                  bwd.get(n, 0.0), s["in"], s["out"],
                                  sum(p.numel() * p.element_size() for p in own)))
    report = Report(name, size, batch, classes, layers, total_fwd, total_bwd, conv_fwd,
                    sum(p.numel() for p in model.parameters()))
    report.outside_fwd = total_fwd - sum(x.flops_fwd for x in layers)
    report.outside_bwd = total_bwd - sum(x.flops_bwd for x in layers)
    return report


def shape_of(report: Report) -> str:
    return (f"{report.model} at {report.size}x{report.size}, batch {report.batch}, "
            f"{report.classes} classes")


def gmacs(macs: float) -> str:
    return f"{macs / 1e9:.3f} GMACs"


def layer_table(report: Report) -> Table:
    t = Table(f"Multiply-adds per layer: {shape_of(report)}", [
        ("Layer", TEXT), ("Type", TEXT), ("Output", TEXT), ("Params", INT), ("MACs", INT),
        ("Share", PCT), ("MACs fwd+bwd", INT), ("Activation bytes", INT)])
    total = report.flops_fwd or 1.0
    for x in report.layers:
        t.rows.append([x.name, x.type, x.shape, x.params, x.macs_fwd, x.flops_fwd / total,
                       x.macs_fwd + x.macs_bwd, x.out_bytes])
    if report.outside_fwd or report.outside_bwd:
        t.rows.append(["(outside leaf modules)", "functional", "-", None,
                       report.outside_fwd / 2, report.outside_fwd / total,
                       (report.outside_fwd + report.outside_bwd) / 2, None])
    t.rows.append(["total", "", "", report.params, report.macs_fwd, 1.0 if report.flops_fwd
                   else None, report.macs_train, report.activation_bytes])
    t.whole = {"Layer", "Output"}
    per_image = report.macs_fwd / report.batch
    t.notes += [
        (f"forward: {gmacs(report.macs_fwd)} ({gmacs(per_image)} per image, "
         f"{2 * per_image / 1e9:.3f} GFLOPs); forward+backward: "
         f"{gmacs(report.macs_train)}; convolutions: {fmt_share(report.conv_share)} of "
         "the forward MACs"),
        MAC_NOTE,
        ("Output: one image's output shape, (xN) for a module run N times; activation "
         "bytes: what the layer writes for the whole batch (float32), summed over its "
         "calls."),
    ]
    return t


def fmt_share(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}%"


def summary_table(reports: list[Report]) -> Table:
    t = Table("Totals", [("Model", TEXT), ("Size", INT), ("Batch", INT), ("Params", INT),
                         ("MACs fwd", INT), ("GMACs/image", NUM), ("MACs fwd+bwd", INT),
                         ("Conv share", PCT), ("Activation bytes", INT)])
    for r in reports:
        t.rows.append([r.model, r.size, r.batch, r.params, r.macs_fwd,
                       f"{r.macs_fwd / r.batch / 1e9:.3f}", r.macs_train, r.conv_share,
                       r.activation_bytes])
    t.notes.append(MAC_NOTE)
    return t


def peak_rows(reports: list[Report], devices: list[paleo.Device]) -> list[dict]:
    """Seconds per image of each model's forward pass at each GPU's published fp32 peak:
    the seed's estimate (compute alone at 100% of peak) and PALEO's (reads, compute and
    writes at PPP = 1)."""
    rows = []
    for r in reports:
        for d in devices:
            full = paleo.network_time(r.layers, d.fp32, d.bandwidth)[0]
            every = paleo.network_time(r.layers, d.fp32, d.bandwidth, "all_layers")[0]
            rows.append({"model": r.model, "gpu": d.name, "fp32_flops": d.fp32,
                         "bandwidth": d.bandwidth,
                         "compute_s_per_image": paleo.compute_time(r.flops_fwd, d.fp32) / r.batch,
                         "paleo_s_per_image": full / r.batch,
                         "paleo_all_layers_s_per_image": every / r.batch})
    return rows


def _per_s(seconds: float) -> float | None:
    return 1 / seconds if seconds else None


def peaks_table(reports: list[Report], devices: list[paleo.Device]) -> Table:
    t = Table("Forward pass at published fp32 peaks (ideal: 100% of peak)", [
        ("Model", TEXT), ("GPU", TEXT), ("TFLOP/s", NUM), ("GB/s", RATE),
        ("Compute us/image", NUM), ("Images/s", RATE), ("PALEO us/image", NUM),
        ("PALEO images/s", RATE)])
    for row in peak_rows(reports, devices):
        compute, full = row["compute_s_per_image"], row["paleo_s_per_image"]
        t.rows.append([row["model"], row["gpu"], f"{row['fp32_flops'] / 1e12:g}",
                       row["bandwidth"] / 1e9, f"{compute * 1e6:.1f}", _per_s(compute),
                       f"{full * 1e6:.1f}", _per_s(full)])
    t.notes += [
        ("Compute: FLOPs (2 x MACs, the way a datasheet counts a fused multiply-add) / "
         "peak fp32 FLOP/s, the seed's question 4; images/s is its reciprocal, the "
         "theoretical peak throughput at this batch size."),
        ("PALEO: per layer (bytes read + bytes written) / bandwidth + FLOPs / peak, "
         "summed over the layers the paper counts (conv, linear, pooling; not BatchNorm "
         "or activations: paleo_all_layers_s_per_image in the JSON charges every leaf) "
         "(engine/paleo.py), activations and weights in float32; at batch 1 "
         "reading the weights of large linear layers weighs heavily."),
        "K80: the board's figures (two GK210 GPUs); one CUDA device has half of them.",
    ]
    return t
