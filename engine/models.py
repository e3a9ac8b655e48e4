"""Models by name, freezing by layer name, and loading an earlier run's weights."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm


def build_model(name: str, num_classes: int) -> nn.Module:
    if name == "resnet18":
        return tvm.resnet18(num_classes=num_classes)
    if name == "resnet18_cifar":  # 3x3 stem, no max-pool: keeps 32x32 detail for CIFAR
        m = tvm.resnet18(num_classes=num_classes)
        m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
        return m
    if name == "resnet50":
        return tvm.resnet50(num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}")


def _under(name: str, layers) -> bool:
    return "all" in layers or any(name == p or name.startswith(p + ".") for p in layers)


def freeze_except(model: nn.Module, layers) -> None:
    """Only parameters under `layers` (module names, or "all") are trained."""
    for name, p in model.named_parameters():
        p.requires_grad_(_under(name, layers))


def train_mode(model: nn.Module, layers) -> None:
    """model.train(), except that frozen BatchNorm layers keep their running statistics."""
    model.train()
    if "all" in layers:
        return
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not _under(name, layers):
            m.eval()


def count_params(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


class InitError(Exception):
    pass


def load_init(model: nn.Module, path: Path) -> list[str]:
    """Load an earlier run's weights; the head may differ (rotation's 4 classes against
    10) and is left freshly initialised. Returns the keys that were not loaded."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InitError(f"init checkpoint {path} does not exist") from None
    except Exception as exc:
        raise InitError(f"cannot load init checkpoint {path}: {exc}") from None
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise InitError(f"{path} holds no model state dict")
    own = model.state_dict()
    load, skipped = {}, []
    for key, value in own.items():
        src = state.get(key)
        if src is not None and src.shape == value.shape:
            load[key] = src
        else:
            skipped.append(key)
    if not load or any(not k.startswith("fc.") for k in skipped):
        bad = [k for k in skipped if not k.startswith("fc.")][:3]
        raise InitError(f"{path} does not fit this model (mismatched: {', '.join(bad)}); "
                        "was it trained with another model?")
    model.load_state_dict(load, strict=False)
    return skipped
