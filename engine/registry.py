"""The models Rotunda can build: one table that config validation, the model builder,
the CLI and the app all read. No torch here (the app shows it).

A new model is one line here and one `build_NAME` function in engine/models.py.
"""
from __future__ import annotations

from dataclasses import dataclass

RESNET_LAYERS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: tuple  # the module names train_layers may name
    head: str  # the output layer: replaced when the number of classes differs
    input_size: int  # the image size it is meant for
    description: str


MODELS = {m.name: m for m in (
    ModelSpec("resnet18", RESNET_LAYERS, "fc", 224, "torchvision ResNet18"),
    ModelSpec("resnet18_cifar", RESNET_LAYERS, "fc", 32,
              "ResNet18 with a 3x3 stem and no max-pool, for 32x32 images"),
    ModelSpec("resnet50", RESNET_LAYERS, "fc", 224, "torchvision ResNet50"),
    ModelSpec("lenet", ("conv1", "conv2", "fc1", "fc2", "fc"), "fc", 32,
              "LeNet-5 for colour images"),
    ModelSpec("alexnet", ("features", "classifier", "fc"), "fc", 70,
              "AlexNet as seed 001's layer table (70x70 input for CIFAR-10)"),
    ModelSpec("cifarnet", ("stem", "layer1", "layer2", "layer3", "fc"), "fc", 32,
              "small fast net for 32x32: three conv stages, global max-pool"),
)}
