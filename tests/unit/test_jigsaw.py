"""The jigsaw task's permutation set and tiles (engine/tasks/jigsaw.py), on the CPU."""
from math import comb
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.core.errors import RotundaError
from engine.tasks import jigsaw as J


def min_distance(p: np.ndarray) -> int:
    d = (p[:, None, :] != p[None, :, :]).sum(2)
    np.fill_diagonal(d, 99)
    return int(d.min())


def ball(radius: int, n: int = 9) -> int:
    """Permutations of n within Hamming distance `radius` of a given one: choose which
    positions differ and derange them."""
    der = [1, 0]
    for k in range(2, n + 1):
        der.append((k - 1) * (der[-1] + der[-2]))
    return sum(comb(n, k) * der[k] for k in range(radius + 1))


def test_all_permutations():
    p = J._all_permutations()
    assert p.shape == (362880, 9)
    assert (np.sort(p, axis=1) == np.arange(9)).all()
    assert len(np.unique(p, axis=0)) == 362880


def test_permutation_set_size_distinct_and_far_apart():
    p = J.permutation_set(100)
    assert p.shape == (100, 9) and p.dtype == np.int64
    assert (np.sort(p, axis=1) == np.arange(9)).all()  # each row a permutation
    assert len({tuple(r) for r in p}) == 100
    d = min_distance(p)
    # Greedy max-min picks its i-th permutation at distance >= r + 1 from the others while
    # (i - 1) balls of radius r cannot cover all 9! (Gilbert-Varshamov): here r + 1 = 5.
    guaranteed = max(r + 1 for r in range(9) if 99 * ball(r) < 362880)
    assert guaranteed == 5
    # At most 9 * 8 = 72 permutations of 9 can be pairwise 8 apart (two that agree on
    # nothing but one position cannot share their first two values), so 100 reach <= 7.
    assert guaranteed <= d <= 7
    assert d == 6  # what the deterministic set reaches
    offdiag = (p[:, None, :] != p[None, :, :]).sum(2)[~np.eye(100, dtype=bool)]
    assert offdiag.mean() == pytest.approx(8.08, abs=0.01)


def test_permutation_set_deterministic_and_cached():
    a = J.permutation_set(100)
    assert J.permutation_set(100) is a  # cached per process
    J.permutation_set.cache_clear()
    assert (J.permutation_set(100) == a).all()
    assert not a.flags.writeable
    assert (J.permutation_set(10) == a[:10]).all()  # greedy: a prefix of the larger set
    with pytest.raises(RotundaError):
        J.permutation_set(362881)


def test_tile_geometry():
    assert J.tile_geometry(32, 32) == (10, 10, 8)
    assert J.tile_geometry(64, 64) == (21, 21, 18)
    assert J.tile_geometry(96, 96) == (32, 32, 27)
    with pytest.raises(RotundaError, match="image_size"):
        J.tile_geometry(16, 16)


def inverse(perms: torch.Tensor) -> torch.Tensor:
    """inv[b, perms[b, k]] = k."""
    inv = torch.empty_like(perms)
    inv.scatter_(1, perms, torch.arange(perms.shape[1]).expand_as(perms))
    return inv


def test_shuffle_then_unshuffle_gives_the_tiles_back():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=gen)
    tiles = J.cut_tiles(x)
    assert tiles.shape == (5, 9, 3, 8, 8)
    assert torch.equal(tiles[1, 4], x[1, :, 10:18, 10:18])  # centre cell's corner, no jitter
    perms = torch.from_numpy(J.permutation_set(100).copy())[torch.tensor([0, 3, 7, 99, 3])]
    shuffled = J.shuffle_tiles(tiles, perms)
    assert not torch.equal(shuffled, tiles)
    assert torch.equal(J.shuffle_tiles(shuffled, inverse(perms)), tiles)


def cell_coded(b: int, size: int) -> torch.Tensor:
    """Images whose every 3x3 grid cell is one value, 20 * cell + 7, so that any tile
    inside a cell names it."""
    x = torch.zeros(b, 3, size, size, dtype=torch.uint8)
    for cell in range(9):
        r, c = divmod(cell, 3)
        x[:, :, r * size // 3:(r + 1) * size // 3, c * size // 3:(c + 1) * size // 3] = \
            20 * cell + 7
    return x


def settings(**kw):
    base = {"jigsaw_permutations": 100, "image_size": 32, "model": "resnet18_cifar",
            "label_smoothing": 0.0}
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("size", [32, 64, 96])
def test_train_views(size):
    task = J.Jigsaw(settings(image_size=size))
    x = cell_coded(6, size)
    gen = torch.Generator().manual_seed(1)
    views, target = task.train_views(x, None, gen)
    t = J.tile_geometry(size, size)[2]
    assert views.shape == (6 * 9, 3, t, t) and views.dtype == torch.uint8
    assert target.shape == (6,) and target.dtype == torch.long
    assert ((0 <= target) & (target < 100)).all()
    assert task.images_per_step(6) == len(views)
    # Every tile lies inside one cell (jitter never crosses a gap), and position k of
    # image b holds the cell the image's permutation names.
    tiles = views.view(6, 9, 3, t, t)
    assert (tiles == tiles[..., :1, :1]).all()
    cells = (tiles[:, :, 0, 0, 0].long() - 7) // 20
    assert torch.equal(cells, task.perms[target])


def test_jitter_moves_tiles():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    a = J.cut_tiles(x, torch.Generator().manual_seed(0))
    b = J.cut_tiles(x, torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


def test_forward_and_build():
    from engine.models.zoo import build_model

    s = settings()
    task = J.Jigsaw(s)
    model = build_model("resnet18_cifar", 1, 32)
    model.fc = torch.nn.Identity()
    model.train()
    (head,) = task.build(model, 512)
    assert model.training and model.bn1.training  # the dry run left training mode alone
    assert head[0].in_features == 9 * 512 and head[-1].out_features == 100
    x, y = task.train_views(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), None,
                            torch.Generator().manual_seed(0))
    loss, logits, target = task.forward(model, x.float() / 255, y)
    assert logits.shape == (2, 100) and torch.equal(target, y)
    assert loss.item() == pytest.approx(np.log(100), rel=0.3)
    assert task.outputs(10) is None


def test_build_refuses_a_backbone_that_cannot_take_tiles():
    from engine.models.zoo import build_model

    task = J.Jigsaw(settings(model="lenet"))
    model = build_model("lenet", 1, 32)
    model.fc = torch.nn.Identity()
    with pytest.raises(RotundaError, match="lenet does not take 8-pixel tiles"):
        task.build(model, 84)
