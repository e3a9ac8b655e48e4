"""SimCLR (Chen et al. 2020): both views through the backbone and a projection head;
NT-Xent pulls each image's two views together and pushes the other 2N-2 apart."""
from __future__ import annotations

from engine.tasks.ssl import TwoViews


class SimCLR(TwoViews):
    def build(self, model, width: int) -> list:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.head = SimCLRProjectionHead(width, self.s.simclr_hidden, self.s.simclr_dim)
        self.criterion = NTXentLoss(temperature=self.s.simclr_temperature)
        self.parts = [self.head]
        return self.parts

    def forward(self, model, x, y):
        z = self.head(model(x)).float()
        z1, z2 = self.halves(z)
        with self.fp32(z):
            return self.criterion(z1, z2), None, None


TASK_CLASS = SimCLR
