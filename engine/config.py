"""experiments.toml: parsed and validated here, and only here.

Every other module receives the frozen dataclasses below, never raw dicts. Errors are
one line naming the file, the line where it can be found, the table and the key.
This module imports neither torch nor textual: the app and the engine share it.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(Exception):
    """A mistake in a configuration, rendered as one actionable line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message, self.file, self.line = message, file, line
        where = file or ""
        if file and line:
            where = f"{file}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


TASKS = ("classify", "rotation")
DATASETS = ("cifar10", "imagefolder", "synthetic", "hdf5")
PLACEMENTS = ("auto", "device", "host")
MODELS = ("resnet18", "resnet18_cifar", "resnet50", "lenet", "alexnet", "cifarnet")
# Module names that train_layers may name, per model (the head is "fc" in every model).
MODEL_LAYERS = {
    "resnet18": ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"),
    "lenet": ("conv1", "conv2", "fc1", "fc2", "fc"),
    "alexnet": ("features", "classifier", "fc"),
    "cifarnet": ("stem", "layer1", "layer2", "layer3", "fc"),
}
MODEL_LAYERS["resnet18_cifar"] = MODEL_LAYERS["resnet50"] = MODEL_LAYERS["resnet18"]
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle", "plateau")
AUGMENTS = ("none", "flip", "crop_flip")
ROTATION_MODES = ("all4", "random")
DEVICES = ("auto", "cpu", "cuda")
INIT_CHECKPOINTS = ("best", "last")
METRICS = ("test_acc_at_best", "final_test_acc", "best_test_acc")


@dataclass(frozen=True)
class Settings:
    """Everything one training run needs. Defaults here, then [defaults], then the
    experiment's table, then --set overrides."""

    task: str = "classify"
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = True
    data_placement: str = "auto"
    image_size: int = 32
    limit_train: int = 0
    limit_test: int = 0
    per_class_train: int = 0
    synthetic_train: int = 2000
    synthetic_test: int = 500
    model: str = "resnet18"
    activation: str = "relu"
    dropout: float = 0.5
    init: str = ""
    init_checkpoint: str = "best"
    train_layers: tuple = ("all",)
    rotation_mode: str = "all4"
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 10
    milestones: tuple = ()
    gamma: float = 0.1
    patience: int = 3
    label_smoothing: float = 0.0
    ema: float = 0.0
    tta: bool = False
    augment: str = "crop_flip"
    cutout: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    log_every: int = 20
    eval_batch_size: int = 1024
    predictions: bool = True


# Per-key rules beyond the type: allowed values, or a minimum.
CHOICES: dict[str, tuple] = {
    "task": TASKS, "dataset": DATASETS, "model": MODELS, "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES, "augment": AUGMENTS, "rotation_mode": ROTATION_MODES,
    "device": DEVICES, "init_checkpoint": INIT_CHECKPOINTS, "activation": ACTIVATIONS,
    "data_placement": PLACEMENTS,
}
MINIMUM: dict[str, float] = {
    "epochs": 1, "batch_size": 1, "image_size": 8, "limit_train": 0, "limit_test": 0,
    "synthetic_train": 8, "synthetic_test": 8, "lr": 0.0, "momentum": 0.0,
    "weight_decay": 0.0, "warmup_epochs": 0.0, "step_size": 1, "gamma": 0.0,
    "patience": 0, "label_smoothing": 0.0, "log_every": 1, "eval_batch_size": 1,
    "dropout": 0.0, "cutout": 0, "per_class_train": 0, "ema": 0.0,
}
SETTING_TYPES: dict[str, Any] = {f.name: type(f.default) for f in dataclasses.fields(Settings)}
LIST_ITEM_TYPES = {"train_layers": str, "milestones": int}
EXPERIMENT_KEYS = {"title", "group", "description", "expect"}
COMPARE_KINDS = ("summary", "table", "models")


@dataclass(frozen=True)
class Expect:
    metric: str
    value: float


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    group: str
    description: str
    settings: Settings
    overrides: dict  # the keys this experiment itself set, for display
    expect: Expect | None = None

    @property
    def needs(self) -> str | None:
        """The experiment whose checkpoint this one starts from, if any."""
        init = self.settings.init
        return init if init and not is_path(init) else None


@dataclass(frozen=True)
class Compare:
    name: str
    title: str
    kind: str
    experiments: tuple


@dataclass(frozen=True)
class Sweep:
    """One run per point: each base experiment crossed with the product of the axes. Runs
    live in runs/<sweep name>/. With `plot`, the table comes with a curve of accuracy
    against that axis, one line per base (e.g. the few-labels study)."""

    name: str
    title: str
    group: str
    bases: tuple
    axes: tuple  # ((key, (value, ...)), ...)
    plot: str = ""

    @property
    def base(self) -> str:
        return ", ".join(self.bases)

    def points(self) -> list[tuple[str, str, list[str]]]:
        """(label, base experiment, overrides) for every point."""
        import itertools
        from .rundir import toml_value

        keys = [k for k, _ in self.axes]
        out = []
        for base in self.bases:
            for values in itertools.product(*(vals for _, vals in self.axes)):
                overrides = [f"{k}={toml_value(v)}" for k, v in zip(keys, values)]
                label = " ".join(f"{k}={v}" for k, v in zip(keys, values))
                out.append((f"{base} {label}" if len(self.bases) > 1 else label, base,
                            overrides))
        return out


ABLATION_MODES = ("add_one", "remove_one", "all")


@dataclass(frozen=True)
class Ablation:
    """Components switched on over a baseline (the base experiment). add_one: the
    baseline and the baseline plus each component; remove_one: everything, and
    everything but each component (and the baseline, for the deltas); all: every
    combination. Each configuration runs `seeds` times (seed = 0, 1, ...)."""

    name: str
    title: str
    group: str
    base: str
    components: tuple  # ((component, (override, ...)), ...)
    mode: str
    seeds: int

    def configs(self) -> list[tuple[str, list[str]]]:
        import itertools

        names = [c for c, _ in self.components]
        on = dict(self.components)

        def config(chosen):
            if not chosen:
                return "baseline"
            if len(chosen) == len(names) and len(names) > 1:
                return "full"
            return "+" + "+".join(chosen)
        if self.mode == "add_one":
            sets = [()] + [(n,) for n in names]
        elif self.mode == "remove_one":
            sets = [()] + [tuple(names)] + [tuple(m for m in names if m != n) for n in names]
        else:
            sets = [c for r in range(len(names) + 1) for c in itertools.combinations(names, r)]
        out = []
        for chosen in sets:
            label = config(chosen)
            if self.mode == "remove_one" and 0 < len(chosen) == len(names) - 1:
                label = "full-" + next(n for n in names if n not in chosen)
            out.append((label, [o for n in chosen for o in on[n]]))
        return out

    def points(self) -> list[tuple[str, str, list[str]]]:
        return [(f"{label} seed={seed}", self.base, overrides + [f"seed={seed}"])
                for label, overrides in self.configs() for seed in range(self.seeds)]


@dataclass(frozen=True)
class Lab:
    runs_dir: str = "runs"
    runs_per_gpu: int = 1
    runs_on_cpu: int = 1


@dataclass(frozen=True)
class Config:
    path: Path
    lab: Lab
    defaults: Settings
    experiments: dict = field(default_factory=dict)  # name -> Experiment, in file order
    compares: dict = field(default_factory=dict)  # name -> Compare
    sweeps: dict = field(default_factory=dict)  # name -> Sweep
    ablations: dict = field(default_factory=dict)  # name -> Ablation

    def plan(self, name: str):
        """A sweep or an ablation: anything that expands into (label, base, overrides)."""
        return self.sweeps.get(name) or self.ablations.get(name)

    @property
    def root(self) -> Path:
        return self.path.parent

    def runs_dir(self, override: str | Path | None = None) -> Path:
        if override:
            return Path(override).resolve()
        return (self.root / self.lab.runs_dir).resolve()

    def experiment(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise ConfigError(f"no experiment named {name!r}{suggest(name, self.experiments)}"
                              f" (python -m engine list shows them)", str(self.path))
        return self.experiments[name]

    def groups(self) -> dict[str, list[Experiment]]:
        out: dict[str, list[Experiment]] = {}
        for exp in self.experiments.values():
            out.setdefault(exp.group, []).append(exp)
        return out


def is_path(init: str) -> bool:
    return "/" in init or init.endswith(".pt")


def suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Locator:
    """Finds the line of a table or key in the raw text, for messages."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def line(self, table: str, key: str | None = None) -> int | None:
        parts = table.split(".")
        pattern = r"^\s*\[\s*" + r"\s*\.\s*".join(
            "(?:" + re.escape(p) + "|\"" + re.escape(p) + "\"|'" + re.escape(p) + "')"
            for p in parts) + (r"\s*\]" if key else r"\s*[\].]")
        start = None
        for i, text in enumerate(self.lines):
            if re.match(pattern, text):
                start = i
                break
        if start is None:
            return None
        if key is None:
            return start + 1
        key_re = re.compile(r"^\s*(?:" + re.escape(key) + "|\"" + re.escape(key) + "\")\\s*=")
        for j in range(start + 1, len(self.lines)):
            if re.match(r"^\s*\[", self.lines[j]):
                break
            if key_re.match(self.lines[j]) or re.search(r"[{,]\s*" + re.escape(key) + r"\s*=",
                                                         self.lines[j]):
                return j + 1
        return start + 1


def _type_name(t) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            tuple: "a list"}[t]


def check_setting(key: str, value: Any, fail) -> Any:
    """Validate one setting's value; `fail(msg)` raises with the right location."""
    if key not in SETTING_TYPES:
        fail(f"unknown key {key!r}{suggest(key, SETTING_TYPES)}")
    want = SETTING_TYPES[key]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is tuple:
        if not isinstance(value, list):
            fail(f"{key} must be a list, got {value!r}")
        item = LIST_ITEM_TYPES[key]
        for v in value:
            if not isinstance(v, item) or isinstance(v, bool):
                fail(f"{key} must be a list of {_type_name(item)[2:]}s, got {value!r}")
        return tuple(value)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        fail(f"{key} must be {_type_name(want)}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        fail(f"{key} = {value!r} is not one of {', '.join(CHOICES[key])}"
             f"{suggest(value, CHOICES[key])}")
    if key in MINIMUM and value < MINIMUM[key]:
        fail(f"{key} must be at least {MINIMUM[key]:g}, got {value!r}")
    return value


def _settings_from(base: Settings, table: dict, fail_for) -> tuple[Settings, dict]:
    values = {}
    for key, value in table.items():
        values[key] = check_setting(key, value, fail_for(key))
    return dataclasses.replace(base, **values), values


def _check_consistency(s: Settings, fail_for) -> None:
    if s.schedule == "multistep" and not s.milestones:
        fail_for("milestones")("schedule = \"multistep\" needs milestones = [epoch, ...]")
    layers = MODEL_LAYERS[s.model]
    bad = [layer for layer in s.train_layers if layer != "all" and layer not in layers]
    if bad:
        fail_for("train_layers")(f"train_layers: {s.model} has no layer {bad[0]!r} "
                                 f"(use all, {', '.join(layers)})")
    if s.dropout >= 1:
        fail_for("dropout")(f"dropout must be below 1, got {s.dropout}")
    if s.ema >= 1:
        fail_for("ema")(f"ema is a decay below 1 (e.g. 0.999; 0 is off), got {s.ema}")
    if s.tta and s.task == "rotation":
        fail_for("tta")("tta (flip averaging) would change rotation labels: use it with "
                        'task = "classify" only')


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

        def fail(msg, text=text):
            raise ConfigError(f"--set {text}: {msg}")
        values[key] = check_setting(key, value, fail)
    out = dataclasses.replace(settings, **values)

    def fail_for(key):
        def fail(msg):
            raise ConfigError(f"--set: {msg}")
        return fail
    _check_consistency(out, fail_for)
    return out


def settings_from_dict(table: dict, source: str) -> Settings:
    """Rebuild Settings from a run's config.toml [settings] table."""
    def fail_for(key):
        def fail(msg):
            raise ConfigError(f"[settings] {msg}", source)
        return fail
    return _settings_from(Settings(), table, fail_for)[0]


def load(path: str | Path) -> Config:
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found (pass --config FILE, or run from the "
                          "folder that holds experiments.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"syntax error: {exc}", name, int(m.group(1)) if m else None) from None
    loc = _Locator(text)

    def fail_for(table: str):
        def for_key(key: str | None):
            def fail(msg: str):
                where = f"[{table}] " if table else ""
                raise ConfigError(where + msg, name, loc.line(table, key) if table else None)
            return fail
        return for_key

    known = {"lab", "defaults", "experiment", "compare", "sweep", "ablation"}
    for top in data:
        if top not in known:
            line = loc.line(top)
            raise ConfigError(f"unknown table [{top}]{suggest(top, known)}"
                              f" (tables: {', '.join(sorted(known))})", name, line)
        if not isinstance(data[top], dict):
            raise ConfigError(f"{top} must be a table", name)

    lab_values = {}
    for key, value in data.get("lab", {}).items():
        fail = fail_for("lab")(key)
        types = {f.name: type(f.default) for f in dataclasses.fields(Lab)}
        if key not in types:
            fail(f"unknown key {key!r}{suggest(key, types)}")
        if not isinstance(value, types[key]) or isinstance(value, bool):
            fail(f"{key} must be {_type_name(types[key])}, got {value!r}")
        lab_values[key] = value
    lab = Lab(**lab_values)

    defaults, _ = _settings_from(Settings(), data.get("defaults", {}), fail_for("defaults"))

    experiments: dict[str, Experiment] = {}
    raw_experiments = data.get("experiment", {})
    if not raw_experiments:
        raise ConfigError("no experiments: add an [experiment.NAME] table", name)
    for exp_name, table in raw_experiments.items():
        tname = f"experiment.{exp_name}"
        ffor = fail_for(tname)
        if not isinstance(table, dict):
            ffor(None)(f"experiment.{exp_name} must be a table")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", exp_name):
            ffor(None)("experiment names may hold letters, digits, _ . and - only")
        meta = {k: v for k, v in table.items() if k in EXPERIMENT_KEYS}
        settings_table = {k: v for k, v in table.items() if k not in EXPERIMENT_KEYS}
        for key in ("title", "group", "description"):
            if key in meta and not isinstance(meta[key], str):
                ffor(key)(f"{key} must be a string")
        expect = None
        if "expect" in meta:
            e = meta["expect"]
            if not isinstance(e, dict) or set(e) != {"metric", "value"}:
                ffor("expect")('expect must be { metric = "...", value = 0.78 }')
            if e["metric"] not in METRICS:
                ffor("expect")(f"expect.metric {e['metric']!r} is not one of "
                               f"{', '.join(METRICS)}{suggest(e['metric'], METRICS)}")
            if not isinstance(e["value"], (int, float)) or isinstance(e["value"], bool):
                ffor("expect")("expect.value must be a number")
            expect = Expect(e["metric"], float(e["value"]))
        settings, overrides = _settings_from(defaults, settings_table, ffor)
        _check_consistency(settings, ffor)
        experiments[exp_name] = Experiment(
            name=exp_name, title=meta.get("title", exp_name), group=meta.get("group", ""),
            description=meta.get("description", ""), settings=settings, overrides=overrides,
            expect=expect)

    for exp in experiments.values():
        problem = _init_problem(exp.settings.init, exp.name, experiments,
                                "an experiment cannot start from itself")
        if problem:
            fail_for(f"experiment.{exp.name}")("init")(problem)
    _check_cycles(experiments, fail_for)

    compares: dict[str, Compare] = {}
    for cname, table in data.get("compare", {}).items():
        ffor = fail_for(f"compare.{cname}")
        if not isinstance(table, dict):
            ffor(None)(f"compare.{cname} must be a table")
        _known_keys(table, ["title", "kind", "experiments"], ffor)
        kind = table.get("kind", "table")
        if kind not in COMPARE_KINDS:
            ffor("kind")(f"kind = {kind!r} is not one of {', '.join(COMPARE_KINDS)}")
        names = table.get("experiments")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            ffor("experiments")("experiments must be a non-empty list of experiment names")
        for n in names:
            if n not in experiments:
                ffor("experiments")(f'no experiment named "{n}"{suggest(n, experiments)}')
        compares[cname] = Compare(cname, table.get("title", cname), kind, tuple(names))

    sweeps: dict[str, Sweep] = {}
    for sname, table in data.get("sweep", {}).items():
        ffor = fail_for(f"sweep.{sname}")
        if not isinstance(table, dict):
            ffor(None)(f"sweep.{sname} must be a table")
        if sname in experiments:
            ffor(None)(f'sweep "{sname}" has the name of an experiment; runs are stored by '
                       "name, so give it another")
        _known_keys(table, ["title", "group", "base", "axes", "plot"], ffor)
        bases = table.get("base")
        bases = [bases] if isinstance(bases, str) else bases
        if not isinstance(bases, list) or not bases:
            ffor("base")("base must be an experiment name or a list of them")
        for base in bases:
            if base not in experiments:
                ffor("base")(f'base = {base!r}: no experiment named "{base}"'
                             f"{suggest(str(base), experiments)}")
        axes = table.get("axes")
        if not isinstance(axes, dict) or not axes:
            ffor("axes")("axes must be a table of setting = [values], e.g. "
                         "axes = { lr = [0.01, 0.1] }")
        checked = []
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                ffor("axes")(f"axes.{key} must be a non-empty list of values")
            fail = ffor("axes")
            checked.append((key, tuple(check_setting(key, v, fail) for v in values)))
        plot = table.get("plot", "")
        if plot and plot not in axes:
            ffor("plot")(f"plot = {plot!r} is not one of the axes ({', '.join(axes)})")
        sweep = Sweep(sname, table.get("title", sname), table.get("group", "Sweeps"),
                      tuple(bases), tuple(checked), plot)
        _check_points(sweep, experiments, ffor("axes"))
        sweeps[sname] = sweep

    ablations: dict[str, Ablation] = {}
    for aname, table in data.get("ablation", {}).items():
        ffor = fail_for(f"ablation.{aname}")
        if not isinstance(table, dict):
            ffor(None)(f"ablation.{aname} must be a table")
        if aname in experiments or aname in sweeps:
            ffor(None)(f'ablation "{aname}" has the name of an experiment or sweep')
        _known_keys(table, ["title", "group", "base", "components", "mode", "seeds"], ffor)
        base = table.get("base")
        if base not in experiments:
            ffor("base")(f'base = {base!r}: no experiment named "{base}"'
                         f"{suggest(str(base), experiments)}")
        comps = table.get("components")
        if not isinstance(comps, dict) or len(comps) < 1:
            ffor("components")("components must be a table of name = { setting = value, ... },"
                               ' e.g. components = { ema = { ema = 0.999 } }')
        checked = []
        for cname, overrides in comps.items():
            if not isinstance(overrides, dict) or not overrides:
                ffor("components")(f"components.{cname} must be a table of settings that "
                                   "switch it on")
            fail = ffor("components")
            from .rundir import toml_value
            checked.append((cname, tuple(f"{k}={toml_value(check_setting(k, v, fail))}"
                                         for k, v in overrides.items())))
        mode = table.get("mode", "add_one")
        if mode not in ABLATION_MODES:
            ffor("mode")(f"mode = {mode!r} is not one of {', '.join(ABLATION_MODES)}"
                         f"{suggest(str(mode), ABLATION_MODES)}")
        seeds = table.get("seeds", 1)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            ffor("seeds")(f"seeds must be a whole number of at least 1, got {seeds!r}")
        ablation = Ablation(aname, table.get("title", aname), table.get("group", "Ablations"),
                            base, tuple(checked), mode, seeds)
        _check_points(ablation, experiments, ffor("components"))
        ablations[aname] = ablation

    return Config(path=path.resolve(), lab=lab, defaults=defaults, experiments=experiments,
                  compares=compares, sweeps=sweeps, ablations=ablations)


def _check_points(plan, experiments: dict, fail) -> None:
    for label, base, overrides in plan.points():
        try:
            s = apply_overrides(experiments[base].settings, overrides)
        except ConfigError as exc:
            fail(f"point {label}: {exc.message}")
        problem = _init_problem(s.init, base, experiments, "the point's own base")
        if problem:
            fail(f"point {label}: {problem}")


def _init_problem(init: str, own: str, experiments: dict, itself: str) -> str | None:
    """What is wrong with `init` for a run of experiment `own`: a name that is no
    experiment, or its own name (a path is checked when the run starts)."""
    if init and init == own:
        return f'init = "{init}": {itself}'
    if init and not is_path(init) and init not in experiments:
        return f'init = "{init}": no experiment named "{init}"{suggest(init, experiments)}'
    return None


def _known_keys(table: dict, allowed: list, ffor) -> None:
    for key in table:
        if key not in allowed:
            ffor(key)(f"unknown key {key!r}{suggest(key, allowed)}")


def _check_cycles(experiments: dict, fail_for) -> None:
    for start in experiments.values():
        seen = [start.name]
        cur = start
        while cur.needs:
            if cur.needs in seen:
                chain = " -> ".join(seen + [cur.needs])
                fail_for(f"experiment.{start.name}")("init")(f"dependency cycle: {chain}")
            seen.append(cur.needs)
            cur = experiments[cur.needs]


def dependency_chain(config: Config, name: str) -> list[str]:
    """The experiments `name` needs, farthest first, ending with `name`."""
    chain = [name]
    cur = config.experiment(name)
    while cur.needs:
        chain.insert(0, cur.needs)
        cur = config.experiments[cur.needs]
    return chain
