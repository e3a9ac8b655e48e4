"""How good a backbone's features are, the same way for every task: a weighted k-NN
monitor (every few epochs, while training), the spread of the normalised embeddings (a
collapse watch), and a linear probe on features computed once and kept on the device.

Features are the input of the model's head (registry.MODELS[...].head): for a task that
trains on features the head is Identity, for a classifier it is the layer before it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine.models.zoo import head as head_of


@torch.inference_mode()
def features(model, model_name: str, split, norm, autocast, device, batch: int):
    """(features, labels) of a whole split, in order, without augmentation."""
    head = head_of(model, model_name)
    got = []
    hook = head.register_forward_hook(lambda m, inp, out: got.append(inp[0].float()))
    model.eval()
    xs, ys = [], []
    try:
        for xb, yb in split.batches(batch, device):
            with autocast:
                model(norm(xb))
            xs.append(got.pop().flatten(1))
            ys.append(yb)
    finally:
        hook.remove()
    return torch.cat(xs), (torch.cat(ys) if ys and ys[0] is not None else None)


def knn_accuracy(train_f, train_y, test_f, test_y, k: int = 200, t: float = 0.1,
                 chunk: int = 1024) -> float:
    """Weighted k-NN on cosine similarity (the vote of Wu et al. 2018): each test image's
    k nearest train images vote for their class with weight exp(similarity / t). The
    defaults, k = 200 and t = 0.1, are the MoCo CIFAR-10 demo's monitor and lightly's
    (Wu et al. used t = 0.07; solo-learn's online k-NN k = 20, t = 0.07): knn_k and knn_t
    set them."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_f))
    correct = 0
    for i in range(0, len(test_f), chunk):
        sim, idx = (test_f[i:i + chunk] @ train_f.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), classes, device=sim.device)
        votes.scatter_add_(1, train_y[idx], (sim / t).exp())
        correct += (votes.argmax(1) == test_y[i:i + chunk]).sum().item()
    return correct / len(test_f)


def spread(f: torch.Tensor) -> float:
    """The per-dimension standard deviation of the L2-normalised embeddings, times the
    square root of their dimension: about 1 when they fill the sphere evenly, 0 when they
    have collapsed to one point (Chen and He 2021, SimSiam)."""
    z = F.normalize(f.float(), dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


COLLAPSED = 0.05  # spread below this: the run is flagged collapsed


def linear_probe(train_f, train_y, test_f, test_y, epochs: int, lr: float = 1e-2,
                 batch: int = 512, seed: int = 0, on_epoch=None) -> float:
    """A linear classifier trained on frozen, cached features (standardised with the
    train statistics); its test accuracy. `on_epoch(done)` after each epoch."""
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    train_f, test_f = (train_f - mean) / std, (test_f - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    gen = torch.Generator(device=train_f.device).manual_seed(seed)
    with torch.enable_grad():
        clf = torch.nn.Linear(train_f.shape[1], classes).to(train_f.device)
        opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=5e-4)
        for done in range(1, epochs + 1):
            order = torch.randperm(len(train_f), device=train_f.device, generator=gen)
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                loss = F.cross_entropy(clf(train_f[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if on_epoch is not None:
                on_epoch(done)
    with torch.inference_mode():
        return (clf(test_f).argmax(1) == test_y).float().mean().item()
