"""The Task: what a training objective decides, and nothing else. The training loop,
the benchmark, the throughput sweep and the gallery ask the run's task instead of testing
its name.

A task says how big the model's head is, how a (uint8, augmented) batch becomes the
model's inputs and targets for training and for evaluation, the loss, which epoch metric
picks the "best" checkpoint, and what the summary reports.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Task:
    # The epoch record key that picks the best checkpoint, and whether lower is better.
    best_metric = "test_loss"
    lower_is_better = True
    best_means = "lowest test loss"  # for logs and tables

    def __init__(self, settings):
        self.s = settings
        self.parts: list = []  # build()'s modules, saved by state_dict()
        if self.best_metric.startswith("test_") and settings.train_val_split:
            # a validation split picks the best epoch; the test set only reports
            self.best_metric = "val_" + self.best_metric[5:]
            self.best_means = self.best_means.replace("test", "validation")

    # The epoch record key a viewer shows as the run's accuracy so far.
    headline = "test_acc"

    def outputs(self, num_classes: int) -> int | None:
        """The size of the model's head for a dataset of `num_classes` classes; None for a
        task that trains on the backbone's features (its head is then Identity)."""
        return num_classes

    def build(self, model, width: int) -> list:
        """The task's own modules (heads, momentum copies), made once the model has its
        weights; `width` is the head's size, or the feature size when outputs() is None.
        Their trainable parameters join the optimiser."""
        return []

    def forward(self, model, x: torch.Tensor, y: torch.Tensor | None):
        """One training step's forward: (loss, logits or None, targets or None); logits
        and targets give the training accuracy where there is one."""
        out = model(x)
        return self.loss(out, y), out, y

    def after_backward(self, model) -> None:
        """Between backward and the optimiser's update (gradient clipping, freezing)."""

    def after_step(self, model, step: int, total_steps: int) -> None:
        """After the optimiser's update (momentum encoders follow the model here)."""

    def collapsed(self, epoch: int, train_loss: float) -> str | None:
        """Why the epoch's training loss says the task's own head has collapsed (a collapse
        the backbone's spread need not show), or None."""
        return None

    def state_dict(self) -> dict:
        """What a resume needs of the task's own state: build()'s modules, with their
        buffers (queues, centres)."""
        return {f"part{i}": m.state_dict() for i, m in enumerate(self.parts)}

    def load_state_dict(self, state: dict) -> None:
        for i, m in enumerate(self.parts):
            m.load_state_dict(state[f"part{i}"])

    def class_names(self, classes: tuple) -> tuple:
        """Names of the head's outputs (summary, gallery)."""
        return tuple(classes)

    def images_per_step(self, batch_size: int) -> int:
        """Model inputs per training step for `batch_size` source images."""
        return batch_size

    def train_views(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        """Inputs and targets for one training step from an augmented batch."""
        return x, y

    def eval_views(self, x: torch.Tensor, y: torch.Tensor | None):
        """Inputs and targets for evaluation (y None: an unlabelled split)."""
        return x, y

    def prediction_order(self, pred: torch.Tensor) -> torch.Tensor:
        """Predictions of one eval batch in the order of predictions.csv's ids."""
        return pred

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), y, label_smoothing=self.s.label_smoothing)

    def sample(self, x: torch.Tensor, y: torch.Tensor, classes: tuple):
        """(images, targets, target names) to show a person: the gallery."""
        return x, y, self.class_names(classes)

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.lower_is_better else value > best

    def summary(self, epochs: list[dict]) -> dict:
        """What the run's summary reports about its epochs."""
        best = next(m for m in epochs if m["epoch"] == self.best_epoch(epochs))
        out = {"best_epoch": best["epoch"], "best_test_loss": best["test_loss"],
               "test_acc_at_best": best["test_acc"], "final_test_acc": epochs[-1]["test_acc"],
               "best_test_acc": max(m["test_acc"] for m in epochs),
               "final_train_acc": epochs[-1]["train_acc"]}
        if best.get("val_loss") is not None:
            out.update(best_val_loss=best["val_loss"], val_acc_at_best=best["val_acc"],
                       best_val_acc=max(m["val_acc"] for m in epochs))
        return out

    def best_epoch(self, epochs: list[dict]) -> int:
        best = None
        for m in epochs:
            if best is None or self.better(m[self.best_metric], best[self.best_metric]):
                best = m
        return best["epoch"]


class FeatureTask(Task):
    """A task that trains the backbone on its features (head Identity) and is judged by
    them: the k-NN monitor (`knn_every`) picks the best epoch, and the linear probe
    (`linear_probe_epochs`) reports at the end (engine/tasks/probe.py). The contrastive
    and self-distillation methods (TwoViews) and jigsaw are FeatureTasks."""

    best_metric = "knn_acc"
    lower_is_better = False
    best_means = "highest k-NN accuracy"
    headline = "knn_acc"

    def outputs(self, num_classes: int) -> None:
        return None  # the backbone ends in Identity: its features are what is judged

    def summary(self, epochs: list[dict]) -> dict:
        scored = [m for m in epochs if m.get("knn_acc") is not None]
        best = max(scored, key=lambda m: m["knn_acc"])  # the first of equals
        return {"best_epoch": best["epoch"], "final_train_loss": epochs[-1]["train_loss"]}

    def best_epoch(self, epochs: list[dict]) -> int:
        return self.summary(epochs)["best_epoch"]
