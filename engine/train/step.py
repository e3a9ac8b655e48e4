"""The training step, shared by training, `engine bench` and `engine throughput`, so that
what they measure is what a run does: the device, autocast, the model as a run trains it,
batch preparation, one optimiser step, and the compile fallback."""
from __future__ import annotations

from contextlib import nullcontext

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


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when amp is on; nothing on the CPU."""
    return (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp
            else nullcontext())


def trainable_model(s: Settings, task, num_classes: int, device: torch.device, load=None):
    """The model as a run trains it: built with the task's head (none, for a task that
    trains on features: the backbone then ends in Identity), given its weights by
    `load(model)` (resume or init), frozen but for train_layers, in training mode (frozen
    BatchNorm stays in eval), on the device (channels_last on CUDA when set), with the
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
    for m in (model, extra):
        m.to(device)
        if device.type == "cuda" and s.channels_last:
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
    compile failure."""

    def __init__(self, model, task, compile_: bool, log):
        self.model, self.task, self.log = model, task, log
        self.fn = torch.compile(model) if compile_ else model
        self.first = compile_

    def __call__(self, opt, x, y, autocast):
        if not self.first:
            return optimise(self._forward, opt, x, y, autocast, self._after_backward)
        self.first = False
        try:
            return optimise(self._forward, opt, x, y, autocast, self._after_backward)
        except Exception as exc:
            self.log(f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly")
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
