"""Checkpoints, written and read in one place. Written to a temporary name and renamed;
read with torch.load(weights_only=True), so a file can hold tensors and plain values
but never code.

best.pt: {"model": state_dict, "epoch": n}, the weights that are evaluated (the EMA's
when on). last.pt: everything a resume needs (TrainState).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.core import files
from engine.core.errors import RunError
from engine.train.optim import Plateau


def save(obj: dict, path: Path) -> None:
    """Serialised in memory first, so that a full disk is a plain OSError (ENOSPC) from
    our own write rather than torch's writer; a failed write leaves no temporary file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    files.atomic_write_bytes(path, buf.getbuffer(), "checkpoint")


def read(path: Path, map_location="cpu") -> dict:
    """A checkpoint's dict; RunError (one line) when it is missing, torn or not ours."""
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torn, truncated, or a pickle that asks for code
        raise RunError(f"cannot read checkpoint {path}: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(obj, dict):
        raise RunError(f"checkpoint {path} holds no dict")
    return obj


def save_weights(path: Path, state_dict: dict, epoch: int) -> None:
    save({"model": state_dict, "epoch": epoch}, path)


@dataclass
class TrainState:
    """last.pt: the raw weights, optimiser, EMA, the last finished epoch, the best epoch
    so far by the task's metric, and the plateau rule's state."""

    model: dict
    optimizer: dict
    epoch: int
    best_value: float | None = None
    best_epoch: int = 0
    plateau: Plateau = field(default_factory=Plateau)
    ema: dict | None = None
    task: dict | None = None  # the task's own state: heads, momentum copies, queues

    def save(self, path: Path) -> None:
        save({"model": self.model, "optimizer": self.optimizer, "epoch": self.epoch,
              "best_value": math.inf if self.best_value is None else self.best_value,
              "best_epoch": self.best_epoch, "plateau_factor": self.plateau.factor,
              "plateau_bad": self.plateau.bad, "plateau_best": self.plateau.best,
              **({"ema": self.ema} if self.ema is not None else {}),
              **({"task": self.task} if self.task else {})}, path)

    @classmethod
    def load(cls, path: Path) -> "TrainState":
        d = read(path)
        try:
            best = float(d.get("best_value", d.get("best_loss")))  # best_loss: before 0.2
            return cls(model=d["model"], optimizer=d["optimizer"], epoch=int(d["epoch"]),
                       best_value=None if math.isinf(best) else best,
                       best_epoch=int(d["best_epoch"]), ema=d.get("ema"), task=d.get("task"),
                       plateau=Plateau(float(d["plateau_factor"]), int(d["plateau_bad"]),
                                       float(d["plateau_best"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise RunError(f"checkpoint {path} lacks what a resume needs ({exc})") from None
