"""The training step, shared by training, `engine bench` and `engine throughput`, so that
what they measure is what a run does: the device, autocast, the model as a run trains it,
batch preparation, one optimiser step, and the compile fallback."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from .augment import crop_flip, cutout
from .errors import DeviceError
from .models import build_model, freeze_except, train_mode
from .optim import make_optimizer
from .settings import Settings


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device = \"cuda\" but no CUDA device is available "
                          "(use device = \"auto\" or \"cpu\")")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when amp is on; nothing on the CPU."""
    return (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp
            else nullcontext())


def trainable_model(s: Settings, outputs: int, device: torch.device, load=None):
    """The model as a run trains it: built, given its weights by `load(model)` (resume or
    init), frozen but for train_layers, in training mode (frozen BatchNorm stays in eval),
    on the device (channels_last on CUDA when set), with its optimiser."""
    model = build_model(s.model, outputs, s.image_size, s.activation, s.dropout)
    if load is not None:
        load(model)
    freeze_except(model, s.train_layers)
    train_mode(model, s.train_layers)
    model.to(device)
    if device.type == "cuda" and s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, make_optimizer(s, [p for p in model.parameters() if p.requires_grad])


def prepare_batch(xb: torch.Tensor, yb: torch.Tensor, s: Settings, task, gen: torch.Generator):
    """Augmentation, then the task's views and targets, as batched tensor ops on a uint8
    batch."""
    if s.augment != "none":
        xb = crop_flip(xb, gen, crop=s.augment == "crop_flip", flip=True)
    if s.cutout:
        xb = cutout(xb, s.cutout, gen)
    return task.train_views(xb, yb, gen)


def optimise(model, opt, x, y, autocast, loss_fn):
    """One training step: forward (under autocast), loss in fp32, backward, update."""
    with autocast:
        out = model(x)
        loss = loss_fn(out, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return out, loss


class Stepper:
    """optimise() on the compiled model when compile is on. torch.compile fails lazily, at
    the first call: only that call falls back to the eager model; an error in any later
    step (out of memory in epoch 7) is that error, not a compile failure."""

    def __init__(self, model, compile_: bool, log):
        self.model, self.log = model, log
        self.fn = torch.compile(model) if compile_ else model
        self.first = compile_

    def __call__(self, opt, x, y, autocast, loss_fn):
        if not self.first:
            return optimise(self.fn, opt, x, y, autocast, loss_fn)
        self.first = False
        try:
            return optimise(self.fn, opt, x, y, autocast, loss_fn)
        except Exception as exc:
            self.log(f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly")
            self.fn = self.model
            return optimise(self.model, opt, x, y, autocast, loss_fn)


def logits(model, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """The model's output; with tta, the mean of the outputs for the image and its mirror."""
    out = model(x)
    return (out + model(x.flip(3))) / 2 if tta else out
