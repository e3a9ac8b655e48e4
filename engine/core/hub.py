"""Where published (torchvision) weights live on this machine, without torch: the app
shows whether a run's weights are there before it launches, and the engine's error when
they are missing is the same line.

torchvision caches a download as <torch hub dir>/checkpoints/<file name>; the hub dir is
$TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub (torch.hub's own
rule, which a test checks against torch.hub.get_dir()).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.core.registry import MODELS

URL = "https://download.pytorch.org/models/"
# torch.hub's convention: a file named NAME-<first hex digits of its sha256>.pth; eight
# digits at least, so that "resnet-50.pth" is not read as a hash
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class Published:
    model: str
    name: str  # IMAGENET1K_V1 (DEFAULT resolved)
    file: str  # resnet18-f37072fd.pth

    @property
    def url(self) -> str:
        return URL + self.file

    @property
    def cached(self) -> Path:
        return checkpoints_dir() / self.file

    def missing_line(self, why: str = "") -> str:
        """What to do when the file is not cached and cannot be downloaded."""
        return (f"{self.model} {self.name} weights are not in {checkpoints_dir()}"
                f"{f' and {why}' if why else ''}: copy {self.file} (from {self.url}) "
                f"there, or set init = {{ weights_file = \"path/to/{self.file}\" }}")


def checkpoints_dir() -> Path:
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"),
                                                   "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def names(model: str) -> list[str]:
    w = MODELS[model].weights
    return ["DEFAULT", *w] if w else []


def published(model: str, name: str) -> Published:
    """The weights `name` (or DEFAULT) of `model`; ValueError with a one-line reason."""
    weights = MODELS[model].weights
    if not weights:
        with_weights = [m for m, spec in MODELS.items() if spec.weights]
        raise ValueError(f"{model} has no published weights (models with ImageNet weights: "
                         f"{', '.join(with_weights)})")
    if name == "DEFAULT":
        name = next(iter(weights))
    if name not in weights:
        raise ValueError(f"{model} has no published weights {name!r} (torchvision has: "
                         f"{', '.join(names(model))})")
    return Published(model, name, weights[name])


def hash_prefix(path: Path) -> str | None:
    m = HASH_IN_NAME.search(Path(path).name)
    return m.group(1) if m else None
