"""The training step, shared by training, `engine bench` and `engine throughput`, so that
what they measure is what a run does: the device, autocast, the model as a run trains it,
batch preparation, one optimiser step, and the compile fallback."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from engine.core.errors import DeviceError
from engine.core.settings import Settings, input_size
from engine.data.augment import crop_flip, cutout
from engine.models.zoo import build_model, freeze_except, head, replace_head, train_mode
from engine.train.optim import make_optimizer


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device = \"cuda\" but no CUDA device is available "
                          "(use device = \"auto\" or \"cpu\")")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass(frozen=True)
class Effective:
    """What a run actually trains with, decided once (decide()) from the settings and the
    device; status.json's "effective" records it, fallbacks included."""

    precision: str = "fp32"  # "bf16" | "fp32"
    memory_format: str = "contiguous"  # "channels_last" | "contiguous"
    compiled: bool = False
    fallbacks: tuple = field(default=())  # one line each: what was asked and not had

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    def fell_back(self, line: str, **changes) -> "Effective":
        return replace(self, fallbacks=(*self.fallbacks, line), **changes)

    def record(self) -> dict:
        return {"precision": self.precision, "memory_format": self.memory_format,
                "compiled": self.compiled, "fallbacks": list(self.fallbacks)}


def decide(s: Settings, device: torch.device) -> Effective:
    """The one place that turns amp, channels_last and compile into what runs. "auto" is on
    with CUDA and off on the CPU; true asks for it on either (bf16 autocast and
    channels_last run on the CPU too). bf16 on a GPU below compute capability 8.0 (a T4,
    a V100): amp = true is refused with one line, amp = auto falls back to fp32, recorded."""
    cuda = device.type == "cuda"
    amp = cuda if s.amp == "auto" else bool(s.amp)
    eff = Effective("bf16" if amp else "fp32",
                    "channels_last" if (cuda if s.channels_last == "auto" else s.channels_last)
                    else "contiguous", bool(s.compile))
    if amp and cuda:
        cc = torch.cuda.get_device_capability(device)
        if cc < (8, 0):
            name = torch.cuda.get_device_name(device)
            line = (f"bf16 needs compute capability 8.0, {name} has {cc[0]}.{cc[1]}")
            if s.amp is True:
                raise DeviceError(f"amp = true: {line}; set amp = false (fp32) or \"auto\"")
            eff = eff.fell_back(f"{line}: fp32", precision="fp32")
    return eff


def configure_backends(device: torch.device, eff: Effective) -> None:
    """Per run, since a process may run several: cuDNN's autotuner (free: drop_last keeps
    every training shape fixed) and TF32 matmuls for fp32 on CUDA; the CPU keeps torch's
    defaults. provenance.json records both."""
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    torch.set_float32_matmul_precision("high" if cuda and not eff.bf16 else "highest")


def autocast_for(device: torch.device, bf16: bool):
    """bf16 autocast when the effective precision is bf16, on CUDA or the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def trainable_model(s: Settings, task, num_classes: int, device: torch.device, load=None,
                    channels_last: bool | None = None):
    """The model as a run trains it: built with the task's head (none, for a task that
    trains on features: the backbone then ends in Identity), given its weights by
    `load(model)` (resume or init), frozen but for train_layers, in training mode (frozen
    BatchNorm stays in eval), on the device (channels_last when decide() says), with the
    task's own modules (projection heads, momentum copies) and one optimiser for both."""
    outputs = task.outputs(num_classes)
    model = build_model(s.model, outputs or 1, input_size(s), s.activation, s.dropout)
    width = outputs
    if outputs is None:
        width = head(model, s.model).in_features
        replace_head(model, s.model, nn.Identity())
    if load is not None:
        load(model)
    freeze_except(model, s.train_layers)
    train_mode(model, s.train_layers)
    extra = nn.ModuleList(task.build(model, width))
    if channels_last is None:
        channels_last = decide(s, device).channels_last
    for m in (model, extra):
        m.to(device)
        if channels_last:
            m.to(memory_format=torch.channels_last)
    params = [p for p in (*model.parameters(), *extra.parameters()) if p.requires_grad]
    return model, make_optimizer(s, params)


def prepare_batch(xb: torch.Tensor, yb: torch.Tensor, s: Settings, task, gen: torch.Generator):
    """Augmentation, then the task's views and targets, as batched tensor ops on a uint8
    batch."""
    if s.augment != "none":
        xb = crop_flip(xb, gen, crop=s.augment == "crop_flip", flip=True)
    if s.cutout:
        xb = cutout(xb, s.cutout, gen)
    return task.train_views(xb, yb, gen)


def optimise(forward, opt, x, y, autocast, after_backward=None):
    """One training step: `forward(x, y)` -> (loss, logits or None, targets or None) under
    autocast (the loss in fp32), backward, `after_backward()` (a task's gradient clipping
    or freezing), update."""
    with autocast:
        loss, out, target = forward(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward()
    opt.step()
    return loss, out, target


class Stepper:
    """optimise() with the task's forward on the compiled model when compile is on.
    torch.compile fails lazily, at the first call: only that call falls back to the eager
    model; an error in any later step (out of memory in epoch 7) is that error, not a
    compile failure. A fallback is logged and handed to `on_fallback(line)` (the run
    records it in status.json's effective), never silent."""

    def __init__(self, model, task, compile_: bool, log, on_fallback=None):
        self.model, self.task, self.log, self.on_fallback = model, task, log, on_fallback
        self.fn = torch.compile(model) if compile_ else model
        self.first = compile_

    def __call__(self, opt, x, y, autocast):
        if not self.first:
            return optimise(self._forward, opt, x, y, autocast, self._after_backward)
        self.first = False
        try:
            return optimise(self._forward, opt, x, y, autocast, self._after_backward)
        except Exception as exc:
            line = f"torch.compile failed ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
            self.log(f"{line}; running eagerly")
            if self.on_fallback is not None:
                self.on_fallback(line)
            self.fn = self.model
            return optimise(self._forward, opt, x, y, autocast, self._after_backward)

    def _after_backward(self):
        self.task.after_backward(self.model)

    def _forward(self, x, y):
        return self.task.forward(self.fn, x, y)


def logits(model, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """The model's output; with tta, the mean of the outputs for the image and its mirror."""
    out = model(x)
    return (out + model(x.flip(3))) / 2 if tta else out
