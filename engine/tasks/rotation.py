"""The rotation pretext (Gidaris et al. 2018): predict how many quarter turns an image
was rotated by; the dataset's labels are ignored. Label k means k quarter turns
counter-clockwise."""
from __future__ import annotations

import torch

from engine.tasks.base import Task

ROTATIONS = ("0", "90", "180", "270")


def rotate_batch(x: torch.Tensor, mode: str, gen: torch.Generator | None = None):
    """all4: every image in all four rotations, [k][image] order; random: one rotation
    each."""
    b = x.shape[0]
    if mode == "all4":
        xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        return xs, torch.arange(4, device=x.device).repeat_interleave(b)
    ks = torch.randint(0, 4, (b,), device=x.device, generator=gen)
    # torch.where, not boolean masks: a mask index is a nonzero(), which waits for the GPU
    out = x
    for k in (1, 2, 3):
        out = torch.where((ks == k).view(-1, 1, 1, 1), torch.rot90(x, k, dims=(2, 3)), out)
    return out, ks


class Rotation(Task):
    def outputs(self, num_classes: int) -> int:
        return 4

    def class_names(self, classes: tuple) -> tuple:
        return ROTATIONS

    def images_per_step(self, batch_size: int) -> int:
        return batch_size * (4 if self.s.rotation_mode == "all4" else 1)

    def train_views(self, x, y, gen):
        return rotate_batch(x, self.s.rotation_mode, gen)

    def eval_views(self, x, y):
        # every test image scored in all four rotations: ids 4*i + k in predictions.csv
        return rotate_batch(x, "all4")

    def prediction_order(self, pred):
        return pred.view(4, -1).t().reshape(-1)  # [k][image] -> [image][k]

    def sample(self, x, y, classes):
        k = torch.arange(len(x)) % 4  # image i turned by i % 4 quarter turns
        x = torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)])
        return x, k, ROTATIONS


TASK_CLASS = Rotation
