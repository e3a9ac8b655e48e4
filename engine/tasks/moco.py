"""MoCo v2 (Chen et al. 2020): queries from the backbone and a projection head, keys from
a momentum copy of both; InfoNCE of each query against its key and a queue of past keys.

Each view goes through both encoders on its own: a BatchNorm batch never mixes the two
views, so a key's statistics carry nothing of its query's samples (the leak MoCo's
section 3.3 removes with Shuffle BN; with one process, per-view forwards do the same).
The key encoder's momentum rises on a cosine from moco_momentum to moco_momentum_end."""
from __future__ import annotations

import copy

import torch
from torch import nn

from engine.tasks.ssl import TwoViews


def host_pointer_bank(size: tuple):
    """lightly's MemoryBankModule with its write pointer kept as a Python int: lightly
    reads its pointer tensor with int() every step, a host sync on a GPU. The same
    queue, written the same way (a batch that reaches the end fills it up to the end and
    the pointer goes back to 0)."""
    from lightly.models.modules.memory_bank import MemoryBankModule

    class HostPointerBank(MemoryBankModule):
        def __init__(self):
            super().__init__(size)
            self.ptr = 0

        @torch.no_grad()
        def _dequeue_and_enqueue(self, batch: torch.Tensor) -> None:
            n, ptr = batch.shape[0], self.ptr
            if ptr + n >= self.size[0]:
                self.bank[ptr:] = batch[: self.size[0] - ptr].detach()
                self.ptr = 0
            else:
                self.bank[ptr:ptr + n] = batch.detach()
                self.ptr = ptr + n

    return HostPointerBank()


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
        # Built without lightly's bank, then given ours: one random draw for the queue, as
        # before, so a seeded run starts from the same queue.
        self.criterion = NTXentLoss(s.moco_temperature)
        self.criterion.memory_bank = host_pointer_bank((s.moco_queue, s.moco_dim))
        self.parts = [self.head, self.key, self.criterion]
        return self.parts

    def forward(self, model, x, y):
        x1, x2 = self.halves(x)
        q = torch.cat([self.head(model(x1)), self.head(model(x2))]).float()
        with torch.no_grad():
            k1, k2 = self.key(x1).float(), self.key(x2).float()
        # Both directions in one call, so that the queue is read once (without this batch's
        # keys: a second call would find each image's own key among its negatives) and then
        # takes all 2N keys.
        with self.fp32(q):
            return self.criterion(q, torch.cat([k2, k1])), None, None

    def momentum(self, step: int, total_steps: int) -> float:
        from lightly.utils.scheduler import cosine_schedule

        return cosine_schedule(step, total_steps, self.s.moco_momentum,
                               self.s.moco_momentum_end)

    def after_step(self, model, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum

        m = self.momentum(step, total_steps)
        update_momentum(model, self.key[0], m)
        update_momentum(self.head, self.key[1], m)

    # The queue is a non-persistent buffer and the pointer a Python int: saved here so
    # that a resume keeps both.
    def state_dict(self) -> dict:
        bank = self.criterion.memory_bank
        return {**super().state_dict(), "queue": bank.bank, "queue_ptr": bank.ptr}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        bank = self.criterion.memory_bank
        bank.bank.copy_(state["queue"])
        bank.ptr = int(state["queue_ptr"])  # a one-element tensor in older checkpoints


TASK_CLASS = MoCo
