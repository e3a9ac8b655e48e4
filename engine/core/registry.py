"""What Rotunda can build: the models and the training objectives (tasks), in tables
that config validation, the model builder, the trainer, the CLI and the app all read.
No torch here (the app shows them).

A new model is one line in MODELS and one `build_NAME` function in engine/models.py.
A new task is one line in TASKS and one file engine/tasks/NAME.py. A task's options
become settings named `<task>_<option>` (`rotation_mode`), validated like every other
setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESNET_LAYERS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")
VGG_LAYERS = ("features", "classifier", "classifier.6")
CIFAR_RESNET_LAYERS = ("conv1", "bn1", "layer1", "layer2", "layer3", "fc")
CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)  # He et al.'s CIFAR-10 table


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: tuple  # the module names train_layers may name
    head: str  # the output layer (a dotted module name): replaced for the dataset's classes
    input_size: int  # the image size it is meant for
    description: str
    # torchvision's published weights for it: name -> file name under
    # https://download.pytorch.org/models/ (the first is torchvision's DEFAULT)
    weights: dict = field(default_factory=dict)
    # published weights' key prefixes -> ours, where our module names differ
    rename: tuple = ()


def _vgg(name: str, file: str) -> ModelSpec:
    return ModelSpec(name, VGG_LAYERS, "classifier.6", 224, f"torchvision {name.upper()}",
                     {"IMAGENET1K_V1": file})


MODELS = {m.name: m for m in (
    ModelSpec("resnet18", RESNET_LAYERS, "fc", 224, "torchvision ResNet18",
              {"IMAGENET1K_V1": "resnet18-f37072fd.pth"}),
    ModelSpec("resnet18_cifar", RESNET_LAYERS, "fc", 32,
              "ResNet18 with a 3x3 stem and no max-pool, for 32x32 images"),
    ModelSpec("resnet34", RESNET_LAYERS, "fc", 224, "torchvision ResNet34",
              {"IMAGENET1K_V1": "resnet34-b627a593.pth"}),
    ModelSpec("resnet50", RESNET_LAYERS, "fc", 224, "torchvision ResNet50",
              {"IMAGENET1K_V2": "resnet50-11ad3fa6.pth",
               "IMAGENET1K_V1": "resnet50-0676ba61.pth"}),
    ModelSpec("lenet", ("conv1", "conv2", "fc1", "fc2", "fc"), "fc", 32,
              "LeNet-5 for colour images"),
    ModelSpec("alexnet", ("features", "classifier", "fc"), "fc", 70,
              "AlexNet as seed 001's layer table (70x70 input for CIFAR-10; 224 with "
              "ImageNet weights)",
              {"IMAGENET1K_V1": "alexnet-owt-7be5be79.pth"}, (("classifier.6.", "fc."),)),
    _vgg("vgg11", "vgg11-8a719046.pth"),
    _vgg("vgg16", "vgg16-397923af.pth"),
    _vgg("vgg19", "vgg19-dcbb9e9d.pth"),
    _vgg("vgg16_bn", "vgg16_bn-6c64b313.pth"),
    _vgg("vgg19_bn", "vgg19_bn-c79401a0.pth"),
    ModelSpec("googlenet", ("conv1", "conv2", "conv3", "inception3a", "inception3b",
                            "inception4a", "inception4b", "inception4c", "inception4d",
                            "inception4e", "inception5a", "inception5b", "fc"), "fc", 224,
              "torchvision GoogLeNet (Inception v1) without the auxiliary classifiers"),
    ModelSpec("cifarnet", ("stem", "layer1", "layer2", "layer3", "fc"), "fc", 32,
              "small fast net for 32x32: three conv stages, global max-pool"),
    *(ModelSpec(f"resnet{d}", CIFAR_RESNET_LAYERS, "fc", 32,
                f"CIFAR ResNet-{d} of He et al. 2016 ({d} = 6n+2 layers, 16/32/64 "
                "channels, option A identity shortcuts)") for d in CIFAR_RESNET_DEPTHS),
)}


@dataclass(frozen=True)
class Option:
    default: Any
    choices: tuple = ()
    minimum: float | None = None
    help: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    options: dict = field(default_factory=dict)  # option name -> Option
    # Mirroring a test image keeps its label (false for rotation: a flip changes which
    # quarter turn an image shows), so flip test-time augmentation is allowed.
    mirror_keeps_label: bool = True
    # It trains the backbone's features without labels (SimCLR, BYOL, ...): no test loss
    # or accuracy, its best epoch is picked by the k-NN monitor.
    trains_features: bool = False


TASKS = {t.name: t for t in (
    TaskSpec("classify", "supervised classification of the dataset's labels"),
    TaskSpec("rotation", "predict the quarter turn (0/90/180/270) of each image; labels "
             "ignored (Gidaris et al. 2018)",
             {"mode": Option("all4", ("all4", "random"),
                             help="all4: every image in all four rotations per step; "
                                  "random: one random rotation each")},
             mirror_keeps_label=False),
    TaskSpec("simclr", "SimCLR (Chen et al. 2020): two views, projection head, NT-Xent",
             {"temperature": Option(0.2, minimum=0.0, help="NT-Xent temperature"),
              "hidden": Option(2048, minimum=1, help="projection head's hidden width"),
              "dim": Option(128, minimum=1, help="projection size")},
             trains_features=True),
    # Sources of each default: docs/ssl.md.
    TaskSpec("moco", "MoCo v2 (Chen et al. 2020): momentum key encoder, a queue of "
             "negatives, InfoNCE",
             {"temperature": Option(0.2, minimum=0.0, help="InfoNCE temperature"),
              "queue": Option(4096, minimum=1, help="negatives kept from earlier batches"),
              "momentum": Option(0.99, minimum=0.0, help="key encoder's EMA decay at the "
                                 "start; rises to momentum_end on a cosine schedule"),
              "momentum_end": Option(0.999, minimum=0.0, help="key encoder's EMA decay at "
                                     "the end"),
              "hidden": Option(2048, minimum=1), "dim": Option(128, minimum=1)},
             trains_features=True),
    TaskSpec("byol", "BYOL (Grill et al. 2020): online and EMA target networks, predictor, "
             "symmetric loss",
             {"momentum": Option(0.99, minimum=0.0, help="target EMA decay at the start; "
                                 "rises to 1 on a cosine schedule"),
              "hidden": Option(4096, minimum=1), "dim": Option(256, minimum=1)},
             trains_features=True),
    TaskSpec("dino", "DINO (Caron et al. 2021): student and EMA teacher, centring and "
             "sharpening",
             {"out_dim": Option(4096, minimum=1, help="prototypes"),
              "hidden": Option(2048, minimum=1), "bottleneck": Option(256, minimum=1),
              "head_bn": Option(True, help="BatchNorm in the head's hidden layers"),
              "student_temp": Option(0.1, minimum=0.0),
              "teacher_temp": Option(0.07, minimum=0.0, help="after the warm-up"),
              "warmup_teacher_temp": Option(0.04, minimum=0.0),
              "warmup_teacher_epochs": Option(50, minimum=0, help="epochs of a linear "
                                              "rise from warmup_teacher_temp"),
              "momentum": Option(0.996, minimum=0.0, help="teacher EMA decay at the start; "
                                 "rises to 1 on a cosine schedule"),
              "center_momentum": Option(0.9, minimum=0.0),
              "freeze_last_layer": Option(1, minimum=0, help="epochs at the start in which "
                                          "the prototypes layer is not updated"),
              "clip_grad": Option(3.0, minimum=0.0, help="largest gradient norm of each "
                                  "student parameter (0: no clipping)")},
             trains_features=True),
    TaskSpec("jigsaw", "jigsaw puzzles (Noroozi and Favaro 2016): 3x3 tiles, a shared "
             "trunk per tile, classify the permutation",
             {"permutations": Option(100, minimum=2, help="size of the permutation set, "
                                     "chosen for maximal Hamming distance")},
             trains_features=True),
)}


def option_settings() -> dict[str, tuple[str, Option]]:
    """settings key -> (task, option) for every task's options."""
    return {f"{t.name}_{k}": (t.name, o) for t in TASKS.values() for k, o in t.options.items()}


# Executors: name -> module holding `EXECUTOR` (engine/launch/); a new backend is one file
# and one line here. Named here so that experiments.toml validates without loading them.
EXECUTORS = {"local": "engine.launch.local", "slurm": "engine.launch.slurm"}

# Comparison kinds ([compare.NAME] kind = ...): name -> module whose `table(config, comp,
# runs_dir)` builds it (engine/report/kinds/); a new kind is one file and one line here.
COMPARE_KINDS = {
    "summary": "engine.report.kinds.summary",
    "table": "engine.report.kinds.side",
    "models": "engine.report.kinds.models",
    "ssl": "engine.report.kinds.ssl",
    "transfer": "engine.report.kinds.transfer",
    "forecast": "engine.report.kinds.forecast",
    "optimus": "engine.report.kinds.optimus",
}
