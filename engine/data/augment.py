"""Augmentation as batched tensor ops on uint8 batches, on whatever device they live:
no per-sample Python, no DataLoader workers."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, gen: torch.Generator, crop: bool, flip: bool, pad: int = 4):
    """Random pad-and-crop with one gather, and a horizontal flip on a random half."""
    b, c, h, w = x.shape
    dev = x.device
    if crop:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=gen)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        x = padded[torch.arange(b, device=dev)[:, None, None, None],
                   torch.arange(c, device=dev)[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(b, device=dev, generator=gen) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero one size x size patch per image at a random centre (clipped at the borders)."""
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b,), device=dev, generator=gen)[:, None, None]
    cx = torch.randint(0, w, (b,), device=dev, generator=gen)[:, None, None]
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    lo = size // 2
    mask = ((ys >= cy - lo) & (ys < cy - lo + size) & (xs >= cx - lo) & (xs < cx - lo + size))
    return x.masked_fill(mask[:, None], 0)
