"""MoCo v2 (Chen et al. 2020): queries from the backbone and a projection head, keys from
a momentum copy of both; InfoNCE of each query against its key and a queue of past keys."""
from __future__ import annotations

import copy

import torch
from torch import nn

from engine.tasks.ssl import TwoViews


class MoCo(TwoViews):
    def build(self, model, width: int) -> list:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        s = self.s
        self.head = MoCoProjectionHead(width, s.moco_hidden, s.moco_dim)
        # The key encoder only follows the query encoder (after_step), never the optimiser.
        self.key = nn.Sequential(copy.deepcopy(model), copy.deepcopy(self.head))
        deactivate_requires_grad(self.key)
        # NT-Xent with a memory bank is MoCo's InfoNCE: the bank is the queue of negatives.
        self.criterion = NTXentLoss(s.moco_temperature,
                                    memory_bank_size=(s.moco_queue, s.moco_dim))
        self.parts = [self.head, self.key, self.criterion]
        return self.parts

    def forward(self, model, x, y):
        q = self.head(model(x)).float()
        with torch.no_grad():
            k1, k2 = self.halves(self.key(x).float())
        # Both directions in one call, so that the queue is read once (without this batch's
        # keys: a second call would find each image's own key among its negatives) and then
        # takes all 2N keys.
        with self.fp32(q):
            return self.criterion(q, torch.cat([k2, k1])), None, None

    def after_step(self, model, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum

        update_momentum(model, self.key[0], self.s.moco_momentum)
        update_momentum(self.head, self.key[1], self.s.moco_momentum)

    # lightly keeps the queue in non-persistent buffers: saved here so that a resume keeps it.
    def state_dict(self) -> dict:
        bank = self.criterion.memory_bank
        return {**super().state_dict(), "queue": bank.bank, "queue_ptr": bank.bank_ptr}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        bank = self.criterion.memory_bank
        bank.bank.copy_(state["queue"])
        bank.bank_ptr.copy_(state["queue_ptr"])


TASK_CLASS = MoCo
