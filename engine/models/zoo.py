"""Models by name, freezing by layer name, and loading an earlier run's weights."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from engine.core.errors import InitError
from engine.core.registry import CIFAR_RESNET_DEPTHS, MODELS

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class LeNet(nn.Module):
    """LeNet-5 for colour images: two 5x5 convolutions with max-pooling, then three linear
    layers; the flattened size follows the input size."""

    def __init__(self, num_classes: int, image_size: int = 32, act=nn.ReLU):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act, self.pool = act(), nn.MaxPool2d(2)
        side = ((image_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = self.act(self.fc1(x.flatten(1)))
        return self.fc(self.act(self.fc2(x)))


class AlexNet(nn.Module):
    """AlexNet as seed 001's layer table: an activation after every convolution and hidden
    linear layer, adaptive average pooling to 6x6, dropout before both hidden linear
    layers (70x70 input for CIFAR-10)."""

    def __init__(self, num_classes: int, act=nn.ReLU, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), act(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), act(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), act(),
            nn.Conv2d(384, 256, 3, padding=1), act(),
            nn.Conv2d(256, 256, 3, padding=1), act(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), act(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), act())
        self.fc = nn.Linear(4096, num_classes)

    def forward(self, x):
        return self.fc(self.classifier(self.avgpool(self.features(x)).flatten(1)))


class CifarNet(nn.Module):
    """A small, fast net for 32x32 images after the fastest published CIFAR-10 trainers'
    shape: a 3x3 stem, then three stages of (conv, max-pool, BN, act, conv, BN, act),
    a global max-pool and a linear head. About 2.0M parameters at the default width."""

    def __init__(self, num_classes: int, act=nn.GELU, widths=(64, 256, 256)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(32), act())

        def stage(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                nn.BatchNorm2d(cout), act(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), act())
        self.layer1 = stage(32, widths[0])
        self.layer2 = stage(widths[0], widths[1])
        self.layer3 = stage(widths[1], widths[2])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)

    # Max-pooled post-activation features are large, so raw logits start far from
    # uniform and SGD blows up in the first steps; a fixed 1/9 scale (as the fastest
    # published CIFAR-10 trainers use) starts the loss at ln(10).
    LOGIT_SCALE = 1 / 9

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1)) * self.LOGIT_SCALE


class CifarBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; option A shortcut: identity, or where the
    block halves the map and doubles the channels, the input subsampled and zero-padded
    in channels (no parameters), as He et al. trained their CIFAR-10 nets."""

    def __init__(self, cin: int, cout: int, stride: int, act):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act1, self.act2 = act(), act()
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x):
        if self.stride == 1 and not self.pad:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016, section 4.2: a 3x3 convolution of 16 channels, three stages of n
    blocks at 16, 32 and 64 channels (32, 16 and 8 pixels), global average pooling and a
    linear head: 6n+2 layers (ResNet-20: n=3, 0.27M parameters)."""

    def __init__(self, depth: int, num_classes: int, act=nn.ReLU):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has 6n+2 layers, not {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act = act()

        def stage(cin, cout, stride):
            return nn.Sequential(*(CifarBlock(cin if i == 0 else cout, cout,
                                              stride if i == 0 else 1, act) for i in range(n)))
        self.layer1 = stage(16, 16, 1)
        self.layer2 = stage(16, 32, 2)
        self.layer3 = stage(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


def _swap_activations(model: nn.Module, act) -> None:
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, act())
        else:
            _swap_activations(child, act)


def build_lenet(num_classes, image_size, act, dropout):
    return LeNet(num_classes, image_size, act)


def build_alexnet(num_classes, image_size, act, dropout):
    return AlexNet(num_classes, act, dropout)


def build_cifarnet(num_classes, image_size, act, dropout):
    return CifarNet(num_classes, act)


def _build_cifar_resnet(depth):
    def build(num_classes, image_size, act, dropout):
        return CifarResNet(depth, num_classes, act)
    return build


for _depth in CIFAR_RESNET_DEPTHS:  # build_resnet20 ... build_resnet110
    globals()[f"build_resnet{_depth}"] = _build_cifar_resnet(_depth)


def build_resnet18(num_classes, image_size, act, dropout):
    return tvm.resnet18(num_classes=num_classes)


def build_resnet18_cifar(num_classes, image_size, act, dropout):
    m = tvm.resnet18(num_classes=num_classes)  # 3x3 stem, no max-pool: keeps 32x32 detail
    m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


def build_resnet34(num_classes, image_size, act, dropout):
    return tvm.resnet34(num_classes=num_classes)


def build_resnet50(num_classes, image_size, act, dropout):
    return tvm.resnet50(num_classes=num_classes)


def build_googlenet(num_classes, image_size, act, dropout):
    # Its convolutions apply F.relu themselves: `activation` does not reach them.
    return tvm.googlenet(num_classes=num_classes, aux_logits=False, init_weights=True,
                         dropout=dropout)


def _build_vgg(name):
    def build(num_classes, image_size, act, dropout):
        return getattr(tvm, name)(num_classes=num_classes, dropout=dropout)
    return build


for _name in ("vgg11", "vgg16", "vgg19", "vgg16_bn", "vgg19_bn"):
    globals()[f"build_{_name}"] = _build_vgg(_name)


def build_model(name: str, num_classes: int, image_size: int = 32, activation: str = "relu",
                dropout: float = 0.5) -> nn.Module:
    """The model registry.MODELS names, with `activation` in place of every ReLU."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}")
    act = ACTIVATIONS[activation]
    model = globals()[f"build_{name}"](num_classes, image_size, act, dropout)
    if activation != "relu":
        _swap_activations(model, act)
    return model


def head(model: nn.Module, model_name: str) -> nn.Module:
    return model.get_submodule(MODELS[model_name].head)


def replace_head(model: nn.Module, model_name: str, module: nn.Module) -> None:
    model.set_submodule(MODELS[model_name].head, module)


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


def load_init(model: nn.Module, model_name: str, path: Path) -> list[str]:
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
    head = MODELS[model_name].head + "."
    bad = [k for k in skipped if not k.startswith(head)][:3]
    if not load or bad:
        raise InitError(f"{path} does not fit this model (mismatched: {', '.join(bad)}); "
                        "was it trained with another model?")
    model.load_state_dict(load, strict=False)
    return skipped
