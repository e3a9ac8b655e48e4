"""The CIFAR ResNets of He et al. 2016 (6n+2 layers, option A shortcuts)."""
import pytest
import torch

from engine.core.registry import CIFAR_RESNET_DEPTHS, MODELS
from engine.models.zoo import build_model, count_params, freeze_except

# He et al. 2016, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters
PUBLISHED = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}


@pytest.mark.parametrize("depth", CIFAR_RESNET_DEPTHS)
def test_parameter_counts_match_the_paper(depth):
    model = build_model(f"resnet{depth}", 10)
    total, _ = count_params(model)
    assert abs(total - PUBLISHED[depth]) / PUBLISHED[depth] < 0.02
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert convs + 1 == depth  # 6n+1 convolutions and the linear head: option A adds none


def test_forward_shape_and_named_layers():
    model = build_model("resnet20", 7)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    spec = MODELS["resnet20"]
    assert spec.head == "fc" and spec.input_size == 32
    names = dict(model.named_children())
    assert all(layer in names for layer in spec.layers)
    freeze_except(model, ["layer3", "fc"])
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"layer3", "fc"}


def test_shortcut_halves_the_map_and_pads_the_channels():
    block = build_model("resnet20", 10).layer2[0]
    x = torch.randn(2, 16, 32, 32)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any()
