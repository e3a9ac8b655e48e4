"""Optimisers, per-step learning-rate schedules, the plateau rule and the weight EMA."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.swa_utils import AveragedModel

from engine.core.settings import Settings


def make_optimizer(s: Settings, params):
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov,
                               weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.RMSprop(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def lr_factor(s: Settings, step: int, steps_per: int) -> float:
    """Multiplier of the base learning rate at a global step (schedules are per step, so a
    resumed run picks up exactly where it stopped)."""
    total = s.epochs * steps_per
    warm = int(s.warmup_epochs * steps_per)
    if s.schedule == "onecycle":
        warm = warm or int(0.3 * total)
    if step < warm:
        return (step + 1) / warm
    epoch = step / steps_per
    if s.schedule in ("constant", "plateau"):
        return 1.0
    if s.schedule == "step":
        return s.gamma ** int(epoch // s.step_size)
    if s.schedule == "multistep":
        return s.gamma ** sum(1 for m in s.milestones if epoch >= m)
    progress = (step - warm) / max(1, total - warm)
    if s.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1 - progress)  # onecycle: linear up, then linear down to zero


@dataclass
class Plateau:
    """schedule = "plateau": multiply the rate by gamma after `patience` epochs without a
    lower validation loss (test loss without a validation split)."""

    factor: float = 1.0
    bad: int = 0
    best: float = math.inf

    def update(self, test_loss: float, s: Settings) -> None:
        if s.schedule != "plateau":
            return
        if test_loss < self.best:
            self.best, self.bad = test_loss, 0
        else:
            self.bad += 1
            if self.bad > s.patience:
                self.factor, self.bad = self.factor * s.gamma, 0


class Ema:
    """An exponential moving average of the weights and BatchNorm buffers; when on, it is
    what gets evaluated, checkpointed as best and used for predictions. The decay warms up
    as min(decay, (1 + t) / (10 + t)) so that a short run's average is not stuck near the
    random initialisation (a plain 0.999 average needs thousands of steps to forget it)."""

    def __init__(self, model, decay: float):
        self.decay, self.now = decay, 0.0
        # AveragedModel for its copy of the model and its state_dict (the checkpoints'
        # layout), not its update_parameters: that copies its CPU counter to the device
        # and back every step, a blocking copy each time
        self.averaged = AveragedModel(model, use_buffers=True)
        self.module = self.averaged.module
        self._lists = None

    @torch.no_grad()
    def update(self, model, step: int) -> None:
        self.now = min(self.decay, (1 + step) / (10 + step))
        if self._lists is None or self._lists[0] is not model:
            mine = [*self.module.parameters(), *self.module.buffers()]
            theirs = [t.detach() for t in (*model.parameters(), *model.buffers())]
            floats = [i for i, a in enumerate(mine) if torch.is_floating_point(a)]
            ints = [i for i in range(len(mine)) if i not in set(floats)]
            self._lists = (model, [mine[i] for i in floats], [theirs[i] for i in floats],
                           [mine[i] for i in ints], [theirs[i] for i in ints])
        _, avg_f, cur_f, avg_i, cur_i = self._lists
        count = self.averaged.n_averaged  # stays on the CPU: reading it waits for nothing
        if int(count) == 0:  # the first update copies, as AveragedModel's does
            torch._foreach_copy_(avg_f, cur_f)
        else:
            torch._foreach_lerp_(avg_f, cur_f, 1 - self.now)
        if avg_i:  # integer buffers (BatchNorm's batch count) follow the model
            torch._foreach_copy_(avg_i, cur_i)
        count += 1
