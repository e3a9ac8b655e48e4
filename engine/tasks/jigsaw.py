"""Jigsaw puzzles (Noroozi and Favaro 2016): cut an image into a 3x3 grid of tiles, shuffle
them by one of a fixed set of permutations, and classify which permutation it was. Every
tile goes through the same backbone (a shared trunk); the nine feature vectors are
concatenated in the shuffled order and a small head names the permutation. The dataset's
labels are ignored; the backbone's features are scored by the k-NN monitor on whole,
untiled images, as for the other feature-training tasks.

Tile geometry. Tiles are cut from the image at its own resolution, never resized: the grid's
cells are image_size // 3 pixels and a tile is about 85% of a cell (the paper's 64-pixel
tiles in 75-pixel cells), placed at a random offset inside its cell, so that neighbouring
tiles are separated by a random gap and continuing edges or textures do not give the answer
away. For 32-pixel CIFAR images: 10-pixel cells, 8-pixel tiles, offsets of 0-2 pixels
(gaps of 0-4). Keeping the image's resolution keeps the scale of what the trunk learns from
tiles the scale it sees at evaluation (whole 32-pixel images); upsampling to 64 pixels first
would train on 2x magnified detail, with four times the compute, and evaluate on detail it
never saw. The catch is a small tile: an 8-pixel tile through resnet18_cifar (3x3 stem, no
max-pool, stride 8) ends as a 1x1 map, through torchvision's resnet18 (stride 32) as 1x1
after its second stage; both accept it (adaptive pooling), and build() checks that the
run's backbone does and says so when it does not. image_size 64 gives 18-pixel tiles and 96
gives 27; use resnet18_cifar below 64 pixels.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.core.errors import RotundaError
from engine.tasks.base import FeatureTask

GRID = 3
TILES = GRID * GRID
SEED = 2016  # the permutation set's first element; fixed, so every run shares the set
MIN_TILE = 6  # pixels: below this a tile holds too little for a puzzle (image_size < 24)


@functools.cache
def _all_permutations() -> np.ndarray:
    """All 9! permutations of range(9), in lexicographic order, as (9!, 9) int8: built
    from those of range(m) by putting each value first and shifting the rest above it."""
    p = np.zeros((1, 0), dtype=np.int8)
    for m in range(1, TILES + 1):
        p = np.concatenate([np.hstack([np.full((len(p), 1), v, np.int8), p + (p >= v)])
                            for v in range(m)])
    return p


@functools.cache
def permutation_set(n: int, seed: int = SEED) -> np.ndarray:
    """`n` permutations of the 9 tiles, (n, 9) int64, read-only; row i, position k holds
    the grid cell whose tile goes to position k. Greedy, as in the paper: start from a
    random permutation, then repeatedly add the one whose minimum Hamming distance to those
    chosen is largest, among all 9!; ties go to the largest total distance (the paper's
    released code maximises the mean alone, which lets the minimum fall to 2), then to the
    first in lexicographic order. Deterministic; cached per process (well under a second
    for 100 on two CPU cores)."""
    perms = _all_permutations()
    if not 1 <= n <= len(perms):
        raise RotundaError(f"jigsaw_permutations = {n}: there are 1 to {len(perms)} "
                           "permutations of 9 tiles")
    # same[k][v][i]: permutation i puts cell v at position k, so that the matches of every
    # permutation with a chosen one are nine vector additions (no 9!-by-9 comparison).
    cols = np.ascontiguousarray(perms.T)
    same = (cols[:, None, :] == np.arange(TILES, dtype=np.int8)[None, :, None]).view(np.uint8)
    nearest = np.full(len(perms), TILES, np.int32)  # minimum distance to the chosen ones
    total = np.zeros(len(perms), np.int32)
    j = int(np.random.default_rng(seed).integers(len(perms)))
    chosen = [j]
    for _ in range(n - 1):
        matches = same[0, perms[j, 0]].copy()
        for k in range(1, TILES):
            matches += same[k, perms[j, k]]
        d = TILES - matches.astype(np.int32)
        np.minimum(nearest, d, out=nearest)  # chosen ones fall to 0 and are not chosen again
        total += d
        j = int((nearest * (TILES * n + 1) + total).argmax())
        chosen.append(j)
    out = perms[chosen].astype(np.int64)
    out.setflags(write=False)
    return out


def tile_geometry(height: int, width: int) -> tuple[int, int, int]:
    """(cell height, cell width, tile size) for an image: square tiles about 85% of a
    cell, as the paper's 64-pixel tiles in 75-pixel cells, leaving room to jitter."""
    ch, cw = height // GRID, width // GRID
    tile = _tile(min(ch, cw))
    if tile < MIN_TILE:
        smallest = GRID * next(c for c in range(MIN_TILE, 4 * MIN_TILE) if _tile(c) >= MIN_TILE)
        raise RotundaError(f"jigsaw: {height}x{width} images give {tile}-pixel tiles; use "
                           f"image_size >= {smallest}")
    return ch, cw, tile


def _tile(cell: int) -> int:
    return cell - max(1, round(cell * 0.15))


def cut_tiles(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, 9, C, t, t): the 3x3 grid's tiles in row-major order, each at a
    random offset inside its cell (gen), or at the cell's corner (gen None). One gather."""
    b, _, h, w = x.shape
    ch, cw, t = tile_geometry(h, w)
    dev = x.device
    cells = torch.arange(TILES, device=dev)
    top = (cells // GRID) * h // GRID  # cell origins: i * H // 3, so cells tile the image
    left = (cells % GRID) * w // GRID
    if gen is None:
        dy = dx = torch.zeros(b, TILES, dtype=torch.long, device=dev)
    else:
        dy = torch.randint(0, ch - t + 1, (b, TILES), device=dev, generator=gen)
        dx = torch.randint(0, cw - t + 1, (b, TILES), device=dev, generator=gen)
    span = torch.arange(t, device=dev)
    rows = (top + dy)[..., None] + span  # (B, 9, t)
    cols = (left + dx)[..., None] + span
    img = torch.arange(b, device=dev)[:, None, None, None]
    tiles = x[img, :, rows[..., :, None], cols[..., None, :]]  # (B, 9, t, t, C)
    return tiles.permute(0, 1, 4, 2, 3)


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """(B, 9, ...) tiles in grid order -> position k holds the tile of cell perms[b, k]."""
    return tiles[torch.arange(len(tiles), device=tiles.device)[:, None], perms]


class Jigsaw(FeatureTask):
    # The trunk trains on features; the best epoch is the k-NN monitor's, as for SimCLR.

    def __init__(self, settings):
        super().__init__(settings)
        self.count = settings.jigsaw_permutations
        self.perms = torch.from_numpy(permutation_set(self.count).copy())

    def images_per_step(self, batch_size: int) -> int:
        return TILES * batch_size  # tiles through the trunk

    def build(self, model, width: int) -> list:
        self._check_trunk(model, width)
        # Concatenated in the shuffled order, the nine features say which tile went where.
        self.head = nn.Sequential(nn.Linear(TILES * width, 1024), nn.ReLU(inplace=True),
                                  nn.Linear(1024, self.count))
        self.parts = [self.head]
        return self.parts

    def _check_trunk(self, model, width: int) -> None:
        """A clear error now, not a shape error in the first step, for a backbone that does
        not take the run's tiles (LeNet's and AlexNet's fixed-size layers)."""
        _, _, t = tile_geometry(self.s.image_size, self.s.image_size)
        modes = [(m, m.training) for m in model.modules()]
        model.eval()  # no BatchNorm statistics from a dry run
        try:
            with torch.no_grad():
                got = model(torch.zeros(2, 3, t, t)).flatten(1).shape[1]
        except RuntimeError as exc:
            raise RotundaError(f"jigsaw: model {self.s.model} does not take "
                               f"{t}-pixel tiles (image_size {self.s.image_size}): "
                               f"{str(exc).splitlines()[0]}") from exc
        finally:
            for m, mode in modes:
                m.training = mode
        if got != width:
            raise RotundaError(f"jigsaw: model {self.s.model} gives {got} features for a "
                               f"{t}-pixel tile, not {width}")

    def train_views(self, x, y, gen):
        """Nine tiles per image, shuffled by a random permutation of the set, as one uint8
        batch (B*9, C, t, t) in [image][position] order; targets: the permutation index."""
        if self.perms.device != x.device:  # moved once, not copied every step
            self.perms = self.perms.to(x.device)
        perms = self.perms
        idx = torch.randint(0, self.count, (len(x),), device=x.device, generator=gen)
        tiles = shuffle_tiles(cut_tiles(x, gen), perms[idx])
        return tiles.flatten(0, 1).contiguous(), idx

    def forward(self, model, x, y):
        f = model(x)  # the shared trunk: every tile of the batch at once
        logits = self.head(f.reshape(-1, TILES * f.shape[1])).float()
        return F.cross_entropy(logits, y), logits, y

    def summary(self, epochs: list[dict]) -> dict:
        out = super().summary(epochs)
        out["final_train_acc"] = epochs[-1]["train_acc"]  # puzzles solved, last epoch
        return out


TASK_CLASS = Jigsaw
