"""Everything one training run needs, as one frozen dataclass, with each key's rules
(allowed values, minimum, list item type) beside its default, and the checks of a value
wherever it comes from: experiments.toml (config.py), --set, a run's config.toml. No torch.

Precedence: the defaults here < [defaults] < [experiment.NAME] < --set overrides.
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from engine.core import hub
from engine.core.errors import ConfigError
from engine.core.registry import MODELS, TASKS, option_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def rule(default, choices=(), minimum=None, items=None):
    """A setting's default with its rules in the field's metadata."""
    return field(default=default, metadata={"choices": tuple(choices), "minimum": minimum,
                                            "items": items})


# ---------------------------------------------------------------- starting points
@dataclass(frozen=True)
class FromExperiment:
    """The latest successful run of another experiment (its best or last checkpoint,
    as init_checkpoint says). TOML: init = "part1"."""

    experiment: str

    def __str__(self) -> str:
        return self.experiment

    def to_toml(self):
        return self.experiment


@dataclass(frozen=True)
class FromFile:
    """A checkpoint file: a run's best.pt or last.pt, or a state dict. TOML:
    init = { file = "path/best.pt" }, relative to experiments.toml."""

    path: str

    def __str__(self) -> str:
        return f"file {Path(self.path).name}"

    def to_toml(self):
        return {"file": self.path}


@dataclass(frozen=True)
class Pretrained:
    """Published weights by torchvision name (or DEFAULT), downloaded into torch's cache
    where there is network. TOML: init = { pretrained = "IMAGENET1K_V1" }."""

    weights: str

    def __str__(self) -> str:
        return f"pretrained {self.weights}"

    def to_toml(self):
        return {"pretrained": self.weights}


@dataclass(frozen=True)
class WeightsFile:
    """Published weights from a file (the offline way): strict keys, the hash in the name
    checked. TOML: init = { weights_file = "resnet50-0676ba61.pth" }, relative to
    experiments.toml."""

    path: str

    def __str__(self) -> str:
        return f"weights {Path(self.path).name}"

    def to_toml(self):
        return {"weights_file": self.path}


Init = FromExperiment | FromFile | Pretrained | WeightsFile
INIT_KINDS = {"file": FromFile, "pretrained": Pretrained, "weights_file": WeightsFile,
              "experiment": FromExperiment}


@dataclass(frozen=True)
class _Settings:
    task: str = rule("classify", TASKS)
    dataset: str = rule("cifar10", ("cifar10", "imagefolder", "synthetic", "hdf5"))
    data_dir: str = "data"
    download: bool = True
    data_placement: str = rule("auto", ("auto", "device", "host"))
    image_size: int = rule(32, minimum=8)
    input_size: int = rule(0, minimum=0)
    train_val_split: float = rule(0.0, minimum=0.0)
    limit_train: int = rule(0, minimum=0)
    limit_test: int = rule(0, minimum=0)
    per_class_train: int = rule(0, minimum=0)
    label_fraction: float = rule(1.0, minimum=0.0)
    synthetic_train: int = rule(2000, minimum=8)
    synthetic_test: int = rule(500, minimum=8)
    model: str = rule("resnet18", MODELS)
    activation: str = rule("relu", ("relu", "leaky_relu", "gelu", "silu"))
    dropout: float = rule(0.5, minimum=0.0)
    init: Init | None = None
    init_checkpoint: str = rule("best", ("best", "last"))
    train_layers: tuple = rule(("all",), items=str)
    epochs: int = rule(30, minimum=1)
    batch_size: int = rule(128, minimum=1)
    optimizer: str = rule("sgd", ("sgd", "adam", "adamw", "rmsprop"))
    lr: float = rule(0.1, minimum=0.0)
    momentum: float = rule(0.9, minimum=0.0)
    nesterov: bool = False
    weight_decay: float = rule(5e-4, minimum=0.0)
    schedule: str = rule("cosine", ("constant", "step", "multistep", "cosine", "onecycle",
                                    "plateau"))
    warmup_epochs: float = rule(0.0, minimum=0.0)
    step_size: int = rule(10, minimum=1)
    milestones: tuple = rule((), items=int)
    gamma: float = rule(0.1, minimum=0.0)
    patience: int = rule(3, minimum=0)
    label_smoothing: float = rule(0.0, minimum=0.0)
    ema: float = rule(0.0, minimum=0.0)
    tta: bool = False
    augment: str = rule("crop_flip", ("none", "flip", "crop_flip"))
    cutout: int = rule(0, minimum=0)
    seed: int = 0
    device: str = rule("auto", ("auto", "cpu", "cuda"))
    gpus: int = rule(1, minimum=1)  # processes on each node (one per GPU)
    nodes: int = rule(1, minimum=1)  # machines, under the Slurm executor
    # auto: on with CUDA, off on the CPU (step.decide); true/false ask for it anywhere
    amp: str = rule("auto", ("auto", True, False))
    channels_last: str = rule("auto", ("auto", True, False))
    compile: bool = False
    knn_every: int = rule(0, minimum=0)
    knn_k: int = rule(200, minimum=1)
    knn_t: float = rule(0.1, minimum=0.0)
    linear_probe_epochs: int = rule(0, minimum=0)
    log_every: int = rule(0, minimum=0)  # 0: auto (train/loop.py log_interval)
    eval_batch_size: int = rule(1024, minimum=1)
    predictions: bool = True


# Each task's options join the settings as <task>_<option> (rotation_mode).
Settings = dataclasses.make_dataclass(
    "Settings",
    [(key, type(o.default), rule(o.default, o.choices, o.minimum))
     for key, (_, o) in option_settings().items()],
    bases=(_Settings,), frozen=True)
Settings.__module__ = __name__
Settings.__doc__ = __doc__.split("\n\n")[0]

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def setting_type(key: str):
    return type(FIELDS[key].default)


def suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


@dataclass(frozen=True)
class Where:
    """Where a value came from, so that a mistake names it: a table of a file (with its
    line, found by `lines`) or a --set override. With `key`, every failure points at
    that key's line (a sweep's axes, an ablation's components)."""

    prefix: str
    file: str | None = None
    lines: Any = None  # config._Lines of the file
    table: str | None = None
    key: str | None = None

    def fail(self, msg: str, key: str | None = None) -> NoReturn:
        key = self.key or key
        line = self.lines.line(self.table, key) if self.lines and self.table else None
        raise ConfigError(self.prefix + msg, self.file, line)

    def sub(self, table: str) -> "Where":
        return Where(f"[{table}] ", self.file, self.lines, table)

    def at(self, key: str) -> "Where":
        return dataclasses.replace(self, key=key)


def type_name(t) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            tuple: "a list"}[t]


def parse_init(value: Any, where: Where):
    """A starting point: "" (random), an experiment name, { file = "..." } or
    { pretrained = "..." }."""
    if value in ("", None):
        return None
    if isinstance(value, str):
        if "/" in value or value.endswith((".pt", ".pth")):
            where.fail(f'init = "{value}" looks like a file: write init = {{ file = '
                       f'"{value}" }}', "init")
        return FromExperiment(value)
    if isinstance(value, dict) and len(value) == 1:
        (kind, arg), = value.items()
        if kind in INIT_KINDS and isinstance(arg, str) and arg:
            return INIT_KINDS[kind](arg)
    where.fail(f"init must be an experiment name, {{ file = \"path.pt\" }}, "
               f"{{ pretrained = \"WEIGHTS\" }} or {{ weights_file = \"path.pth\" }}, got "
               f"{value!r}", "init")


def check_setting(key: str, value: Any, where: Where) -> Any:
    """One setting's value, checked against its type and rules."""
    if key not in FIELDS:
        where.fail(f"unknown key {key!r}{suggest(key, FIELDS)}", key)
    if key == "init":
        return parse_init(value, where)
    want, meta = setting_type(key), FIELDS[key].metadata
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is tuple:
        item = meta["items"]
        if not isinstance(value, list) or any(not isinstance(v, item) or isinstance(v, bool)
                                              for v in value):
            where.fail(f"{key} must be a list of {type_name(item)[2:]}s, got {value!r}", key)
        return tuple(value)
    if any(isinstance(c, bool) for c in meta.get("choices", ())):  # auto, true, false
        if isinstance(value, bool):
            return value
        if not isinstance(value, str):
            where.fail(f"{key} must be \"auto\", true or false, got {value!r}", key)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        where.fail(f"{key} must be {type_name(want)}, got {value!r}", key)
    if meta.get("choices") and value not in meta["choices"]:
        names = [str(c).lower() if isinstance(c, bool) else c for c in meta["choices"]]
        where.fail(f"{key} = {value!r} is not one of {', '.join(names)}"
                   f"{suggest(value, names)}", key)
    if meta.get("minimum") is not None and value < meta["minimum"]:
        where.fail(f"{key} must be at least {meta['minimum']:g}, got {value!r}", key)
    return value


def check_consistency(s: Settings, where: Where) -> None:
    """Rules between settings, once all of them are known."""
    if s.schedule == "multistep" and not s.milestones:
        where.fail("schedule = \"multistep\" needs milestones = [epoch, ...]", "milestones")
    layers = MODELS[s.model].layers
    bad = [layer for layer in s.train_layers if layer != "all" and layer not in layers]
    if bad:
        where.fail(f"train_layers: {s.model} has no layer {bad[0]!r} "
                   f"(use all, {', '.join(layers)})", "train_layers")
    if isinstance(s.init, Pretrained):
        try:
            hub.published(s.model, s.init.weights)
        except ValueError as exc:
            where.fail(f"init: {exc}", "init")
    if s.train_val_split >= 1:
        where.fail(f"train_val_split is the share of the train set held out for validation, "
                   f"below 1 (e.g. 0.2), got {s.train_val_split}", "train_val_split")
    if not 0 < s.label_fraction <= 1:
        where.fail(f"label_fraction is a share of the train set in (0, 1], got "
                   f"{s.label_fraction}", "label_fraction")
    if s.dropout >= 1:
        where.fail(f"dropout must be below 1, got {s.dropout}", "dropout")
    if s.ema >= 1:
        where.fail(f"ema is a decay below 1 (e.g. 0.999; 0 is off), got {s.ema}", "ema")
    if s.knn_t <= 0:
        where.fail(f"knn_t is the k-NN vote's temperature, above 0, got {s.knn_t}", "knn_t")
    for key in ("moco_momentum", "moco_momentum_end", "byol_momentum", "dino_momentum"):
        if getattr(s, key) > 1:
            where.fail(f"{key} is an EMA decay in [0, 1] (e.g. 0.99), got {getattr(s, key)}",
                       key)
    for key in ("simclr_temperature", "moco_temperature", "dino_student_temp",
                "dino_teacher_temp", "dino_warmup_teacher_temp"):
        if getattr(s, key) <= 0:
            where.fail(f"{key} is a softmax temperature, above 0, got {getattr(s, key)}", key)
    if TASKS[s.task].trains_features and not s.knn_every:
        where.fail(f'task = "{s.task}" trains features without labels: set knn_every = 1 '
                   "(or more): its best checkpoint is picked by k-NN accuracy", "knn_every")
    world = s.gpus * s.nodes
    ways = f"gpus = {s.gpus}" + (f" x nodes = {s.nodes}" if s.nodes > 1 else "")
    if world > 1 and s.batch_size % world:
        where.fail(f"batch_size = {s.batch_size} is the global batch, split evenly over the "
                   f"{ways} processes: make it a multiple of {world}", "batch_size")
    if world > 1 and TASKS[s.task].trains_features:
        where.fail(f'{ways}: task = "{s.task}" keeps heads, momentum copies or '
                   "queues of its own that are not synchronised across processes: train it "
                   "with one process", "nodes" if s.nodes > 1 else "gpus")
    if s.tta and not TASKS[s.task].mirror_keeps_label:
        where.fail(f'tta (flip averaging) would change {s.task} labels: use it with '
                   'task = "classify" only', "tta")


PUBLISHED_INPUT = 224  # the crop size of every torchvision ImageNet weights here (tested)


def published_init(s: Settings) -> bool:
    """Starts from published ImageNet weights (by name or from a file): the input follows
    the weights (224 px, ImageNet normalisation)."""
    return isinstance(s.init, (Pretrained, WeightsFile)) and bool(MODELS[s.model].weights)


def input_size(s: Settings) -> int:
    """The size the model sees: input_size when set, else the published weights' size,
    else the stored image_size. Images stay stored at image_size and are resized per
    batch on the device."""
    return s.input_size or (PUBLISHED_INPUT if published_init(s) else s.image_size)


def with_settings(base: Settings, table: dict, where: Where) -> Settings:
    return dataclasses.replace(base, **{k: check_setting(k, v, where) for k, v in table.items()})


def parse_override(text: str) -> tuple[str, Any]:
    """KEY=VALUE from the command line; VALUE is read as TOML, else as a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(settings: Settings, overrides: list[str]) -> Settings:
    values = {}
    for text in overrides:
        key, value = parse_override(text)
        values[key] = check_setting(key, value, Where(f"--set {text}: "))
    out = dataclasses.replace(settings, **values)
    check_consistency(out, Where("--set: "))
    return out


def override_errors(settings: Settings, overrides: list[str]) -> list[str]:
    """Every mistake in a list of overrides, one line each (apply_overrides stops at the
    first): for a dialog that lists them all and stays open."""
    errors, good = [], []
    for text in overrides:
        try:
            apply_overrides(settings, [text])
            good.append(text)
        except ConfigError as exc:
            errors.append(str(exc))
    if not errors:
        try:
            apply_overrides(settings, good)
        except ConfigError as exc:  # each is fine alone, not together
            errors.append(str(exc))
    return errors


def settings_dict(s: Settings) -> dict:
    """Settings as plain TOML-ready values (config.toml's [settings] table)."""
    return {f: (v.to_toml() if hasattr(v, "to_toml") else list(v) if isinstance(v, tuple)
                else v) for f, v in ((f, getattr(s, f)) for f in FIELDS)}


# Settings added after runs were recorded without them: such a run resumes as it was made
# (its checkpoint holds no head BatchNorm, its key momentum was constant), not with the
# new default. A value or a function of the recorded table.
RECORDED_WITHOUT = {"dino_head_bn": False, "dino_freeze_last_layer": 0, "dino_clip_grad": 0.0,
                    "moco_momentum_end": lambda t: t.get("moco_momentum", 0.99)}


def settings_from_dict(table: dict, source: str) -> Settings:
    """Rebuild Settings from a run's config.toml [settings] table."""
    owners = option_settings()
    table = {**{k: v(table) if callable(v) else v for k, v in RECORDED_WITHOUT.items()
                if k not in table and table.get("task") == owners[k][0]}, **table}
    return with_settings(Settings(), table, Where("[settings] ", source))
