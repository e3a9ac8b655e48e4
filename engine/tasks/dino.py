"""DINO (Caron et al. 2021): a student (backbone and projection head onto out_dim
prototypes) matches the softmax of an EMA teacher on the other view. The teacher's output
is centred (a running mean, the loss's `center` buffer) and sharpened (a low temperature,
warmed up over the first epochs): the two together keep it from collapsing. Two global
views only: at 32 px there is little left for multi-crop's small crops. As the official
code: the prototypes layer stays fixed for the first dino_freeze_last_layer epochs and
each student parameter's gradient norm is clipped at dino_clip_grad. As lightly's CIFAR-10
benchmark, BatchNorm in the head's hidden layers (dino_head_bn): without it short SGD runs
collapse to uniform outputs (docs/ssl.md)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from engine.tasks.ssl import TwoViews

UNIFORM_TOLERANCE = 0.001  # of ln(out_dim)


class DINO(TwoViews):
    solarize = 0.2  # the recipe's second global view

    def __init__(self, settings):
        super().__init__(settings)
        self.epoch = 0  # of the next step, from 0: the teacher temperature's warm-up

    def build(self, model, width: int) -> list:
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        s = self.s

        def head():
            return DINOProjectionHead(width, s.dino_hidden, s.dino_bottleneck, s.dino_out_dim,
                                      batch_norm=s.dino_head_bn,
                                      freeze_last_layer=s.dino_freeze_last_layer)

        self.head = head()
        # The head's weight-normed last layer cannot be deep-copied: the teacher gets a fresh
        # head given the student's weights.
        teacher_head = head()
        teacher_head.load_state_dict(self.head.state_dict())
        self.teacher = nn.Sequential(copy.deepcopy(model), teacher_head)
        deactivate_requires_grad(self.teacher)  # moved by after_step only
        self.criterion = DINOLoss(
            output_dim=s.dino_out_dim, warmup_teacher_temp=s.dino_warmup_teacher_temp,
            teacher_temp=s.dino_teacher_temp,
            warmup_teacher_temp_epochs=s.dino_warmup_teacher_epochs,
            student_temp=s.dino_student_temp, center_momentum=s.dino_center_momentum)
        # The loss holds the centre as a registered buffer: in parts, it is saved and moved.
        self.parts = [self.head, self.teacher, self.criterion]
        return self.parts

    def forward(self, model, x, y):
        student = self.halves(self.head(model(x)).float())
        with torch.no_grad():
            teacher = self.halves(self.teacher(x).float())
        # The loss pairs each teacher view with the other student view (not its own).
        with self.fp32(student[0]):
            loss = self.criterion(list(teacher), list(student), epoch=self.epoch)
        return loss, None, None

    def after_backward(self, model) -> None:
        if self.s.dino_clip_grad:
            self.clip(model, self.head, self.s.dino_clip_grad)
        # no gradient, so that the optimiser leaves the layer as it is (no decay either)
        self.head.cancel_last_layer_gradients(self.epoch)

    @staticmethod
    @torch.no_grad()
    def clip(model, head, clip: float) -> None:
        """The official code's clip_gradients: each parameter's gradient scaled down to a
        norm of at most `clip` on its own (not one norm over all of them), here without a
        host sync per parameter."""
        grads = [p.grad for m in (model, head) for p in m.parameters() if p.grad is not None]
        if grads:
            norms = torch._foreach_norm(grads)
            torch._foreach_mul_(grads, [(clip / (n + 1e-6)).clamp_(max=1.0) for n in norms])

    def after_step(self, model, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(step, total_steps, self.s.dino_momentum, 1.0)
        update_momentum(model, self.teacher[0], m)
        update_momentum(self.head, self.teacher[1], m)
        self.epoch = (step + 1) * self.s.epochs // total_steps

    def collapsed(self, epoch: int, train_loss: float) -> str | None:
        # Uniform collapse (the paper's section 5.3): centring wins, teacher and student
        # give every prototype the same probability and the loss sits at ln(out_dim). A
        # learning run is well below it after its first epoch.
        uniform = math.log(self.s.dino_out_dim)
        if epoch > 1 and abs(train_loss - uniform) < UNIFORM_TOLERANCE * uniform:
            return (f"DINO's loss is {train_loss:.4f}, ln {self.s.dino_out_dim} = "
                    f"{uniform:.4f}: its outputs are uniform over the prototypes")
        return None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.epoch = int(state.get("epoch", 0))


TASK_CLASS = DINO
