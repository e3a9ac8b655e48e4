"""Evaluation of one split under inference mode: loss, accuracy and predictions, the
same for every task (it asks the task for the split's views)."""
from __future__ import annotations

import torch

from engine.core.settings import Settings
from engine.data.splits import shard
from engine.train import distributed
from engine.train.step import logits


def evaluate(model, split, task, s: Settings, norm, autocast, device,
             ranks: distributed.Ranks = distributed.SINGLE):
    """Loss, accuracy and per-example predictions on a split, in large batches, in the
    order of predictions.csv's ids. An unlabelled split gives predictions only (loss and
    accuracy None). Over several ranks each evaluates its shard; the sums and the
    predictions are combined."""
    model.eval()
    if ranks.distributed:
        split = shard(split, ranks.rank, ranks.world)
    loss_sum, correct, count = 0.0, 0, 0
    preds = []
    with torch.inference_mode():
        for xb, yb in split.batches(s.eval_batch_size, device):
            xb, yb = task.eval_views(xb, yb)
            with autocast:
                out = logits(model, norm(xb), s.tta)
            p = out.argmax(1)
            if yb is not None:
                loss_sum += task.loss(out, yb).item() * yb.numel()
                correct += (p == yb).sum().item()
                count += yb.numel()
            preds.append(task.prediction_order(p).cpu())
    preds = torch.cat(preds)
    if ranks.distributed:
        loss_sum, correct, count = distributed.sums(loss_sum, correct, count, device=device)
        preds = distributed.gather(preds)
    if not count:
        return None, None, preds
    return loss_sum / count, correct / count, preds
