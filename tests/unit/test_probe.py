"""The evaluation every task shares: the weighted k-NN monitor, the collapse watch and
the linear probe, on feature sets whose answer is known; and SimCLR's NT-Xent loss
against a case computed by hand."""
import math

import torch

from engine.tasks import probe


def _separable(n_per_class=50, classes=5, dim=32, seed=0):
    """Each class a tight cluster around its own axis."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    f = torch.zeros(len(y), dim)
    f[torch.arange(len(y)), y] = 1.0
    return f + 0.05 * torch.randn(len(y), dim, generator=gen), y


def test_knn_is_perfect_on_separable_features_and_chance_on_noise():
    train_f, train_y = _separable(seed=0)
    test_f, test_y = _separable(seed=1)
    assert probe.knn_accuracy(train_f, train_y, test_f, test_y, k=20) == 1.0
    gen = torch.Generator().manual_seed(2)
    noise_train, noise_test = torch.randn(2000, 32, generator=gen), torch.randn(1000, 32,
                                                                               generator=gen)
    labels_train = torch.randint(0, 5, (2000,), generator=gen)
    labels_test = torch.randint(0, 5, (1000,), generator=gen)
    acc = probe.knn_accuracy(noise_train, labels_train, noise_test, labels_test, k=200)
    assert abs(acc - 0.2) < 0.05  # chance for five classes


def test_spread_flags_a_collapsed_embedding():
    even = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    assert 0.9 < probe.spread(even) < 1.1  # fills the sphere
    constant = torch.ones(512, 64) + 1e-4 * torch.randn(512, 64)
    assert probe.spread(constant) < probe.COLLAPSED  # one point


def test_linear_probe_learns_separable_features():
    train_f, train_y = _separable(seed=0)
    test_f, test_y = _separable(seed=1)
    assert probe.linear_probe(train_f, train_y, test_f, test_y, epochs=300) == 1.0


def test_nt_xent_matches_a_hand_computed_case():
    from lightly.loss import NTXentLoss

    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    t = 0.5
    views = torch.cat([z1, z2])
    views = views / views.norm(dim=1, keepdim=True)
    sim = views @ views.T / t
    total = 0.0
    for i in range(4):  # each view's positive is the other view of its image
        pos = (i + 2) % 4
        others = [j for j in range(4) if j != i]
        total += -sim[i, pos] + math.log(sum(math.exp(sim[i, j]) for j in others))
    assert abs(NTXentLoss(temperature=t)(z1, z2).item() - total / 4) < 1e-5
