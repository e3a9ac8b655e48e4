"""BYOL (Grill et al. 2020): the online network (backbone, projection, predictor) predicts
an EMA target network's projection of the other view; no negatives. The target's momentum
rises to 1 on a cosine schedule, so it settles as training ends. The loss is the paper's
scale: 2 - 2 cos, summed over both directions."""
from __future__ import annotations

import copy

import torch
from torch import nn

from engine.tasks.ssl import TwoViews


class BYOL(TwoViews):
    solarize = 0.2  # the recipe's second view

    def build(self, model, width: int) -> list:
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        s = self.s
        self.projection = BYOLProjectionHead(width, s.byol_hidden, s.byol_dim)
        self.prediction = BYOLPredictionHead(s.byol_dim, s.byol_hidden, s.byol_dim)
        self.target = nn.Sequential(copy.deepcopy(model), copy.deepcopy(self.projection))
        deactivate_requires_grad(self.target)  # moved by after_step only
        self.criterion = NegativeCosineSimilarity()
        self.parts = [self.projection, self.prediction, self.target]
        return self.parts

    def forward(self, model, x, y):
        p = self.prediction(self.projection(model(x))).float()
        with torch.no_grad():
            z = self.target(x).float()
        with self.fp32(p):
            return self.pair_loss(p, z), None, None

    def pair_loss(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The paper's loss (Grill et al. 2020, eq. 2): 2 - 2 cos of view 1's prediction
        and view 2's target projection, plus the same the other way, each averaged over
        the batch; p and z hold both views stacked. 4 + 4x lightly's mean negative cosine
        averaged over the directions: the same optimum with 4x its gradient, so that a
        published learning rate means what it says. No gradient reaches the target."""
        p1, p2 = self.halves(p)
        z1, z2 = self.halves(z.detach())
        # NegativeCosineSimilarity is -mean(cos): 2 - 2 mean(cos) is 2 + 2 criterion
        return (2 + 2 * self.criterion(p1, z2)) + (2 + 2 * self.criterion(p2, z1))

    def momentum(self, step: int, total_steps: int) -> float:
        from lightly.utils.scheduler import cosine_schedule

        return cosine_schedule(step, total_steps, self.s.byol_momentum, 1.0)

    def after_step(self, model, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum

        m = self.momentum(step, total_steps)
        update_momentum(model, self.target[0], m)
        update_momentum(self.projection, self.target[1], m)


TASK_CLASS = BYOL
