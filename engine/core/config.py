"""experiments.toml: parsed and validated here, and only here.

Every other module receives the frozen dataclasses of engine/core/schema.py, never raw
dicts. Errors are
one line naming the file, the line where it can be found, the table and the key.
This module imports neither torch nor textual: the app and the engine share it.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from engine.core.errors import ConfigError
from engine.core.plans import ABLATION_MODES, Ablation, Sweep
from engine.core.registry import COMPARE_KINDS, EXECUTORS
from engine.core.schema import (  # noqa: F401  (Config, needs: the loader's vocabulary)
    EXPERIMENT_KEYS, METRICS, SWEEP_KINDS, TABLES, Compare, Config, Expect, Experiment, Lab,
    Reference, Slurm, needs)
from engine.core.rundir import toml_value
from engine.core.settings import (
    Settings,
    Where,
    apply_overrides,
    check_consistency,
    check_setting,
    suggest,
    tomllib,
    type_name,
    with_settings,
)

class _Lines:
    """Finds the line of a table or key in the raw text, for messages."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def _table(self, table: str, exact: bool) -> int | None:
        parts = (r"\s*\.\s*".join("(?:" + re.escape(p) + "|\"" + re.escape(p) + "\"|'"
                                  + re.escape(p) + "')" for p in table.split(".")))
        pattern = re.compile(r"^\s*\[\s*" + parts + (r"\s*\]" if exact else r"\s*[\].]"))
        return next((i for i, text in enumerate(self.lines) if pattern.match(text)), None)

    def line(self, table: str, key: str | None = None) -> int | None:
        start = self._table(table, exact=key is not None)
        if start is None or key is None:
            return None if start is None else start + 1
        key_re = re.compile(r"^\s*(?:" + re.escape(key) + "|\"" + re.escape(key) + "\")\\s*=")
        inline = re.compile(r"[{,]\s*" + re.escape(key) + r"\s*=")
        for j in range(start + 1, len(self.lines)):
            if self.lines[j].lstrip().startswith("["):
                break
            if key_re.match(self.lines[j]) or inline.search(self.lines[j]):
                return j + 1
        return start + 1


def _read(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass --config FILE, or run from the "
                          "folder that holds experiments.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"syntax error: {exc}", str(path),
                          int(m.group(1)) if m else None) from None


def load(path: str | Path) -> Config:
    path = Path(path)
    text, data = _read(path)
    top = Where("", str(path), _Lines(text))
    for name, value in data.items():
        if name not in TABLES:
            Where("", str(path), _Lines(text), name).fail(
                f"unknown table [{name}]{suggest(name, TABLES)} (tables: "
                f"{', '.join(sorted(TABLES))})")
        if not isinstance(value, dict):
            top.fail(f"{name} must be a table")
    defaults = with_settings(Settings(), data.get("defaults", {}), top.sub("defaults"))
    experiments = _experiments(data.get("experiment", {}), defaults, top)
    sweeps = {n: _sweep(n, t, experiments, top.sub(f"sweep.{n}"))
              for n, t in data.get("sweep", {}).items()}
    return Config(
        path=path.resolve(), lab=_lab(data.get("lab", {}), top.sub("lab")), defaults=defaults,
        experiments=experiments,
        compares={n: _compare(n, t, experiments, sweeps, top.sub(f"compare.{n}"))
                  for n, t in data.get("compare", {}).items()},
        sweeps=sweeps,
        ablations={n: _ablation(n, t, experiments, sweeps, top.sub(f"ablation.{n}"))
                   for n, t in data.get("ablation", {}).items()})


def _lab(table: dict, where: Where) -> Lab:
    table = dict(table)
    slurm = _slurm(table.pop("slurm", {}), where.sub("lab.slurm"))
    types = {f.name: type(f.default) for f in dataclasses.fields(Lab) if f.name != "slurm"}
    for key, value in table.items():
        if key not in types:
            where.fail(f"unknown key {key!r}{suggest(key, types)}", key)
        if not isinstance(value, types[key]) or isinstance(value, bool):
            where.fail(f"{key} must be {type_name(types[key])}, got {value!r}", key)
    if table.get("executor", "local") not in EXECUTORS:
        where.fail(f"executor = {table['executor']!r} is not one of {', '.join(EXECUTORS)}",
                   "executor")
    return Lab(**table, slurm=slurm)


SLURM_TIME = re.compile(r"^(?:\d+-)?\d+(?::\d+){0,2}$|^(?:UNLIMITED|INFINITE)$")
SLURM_MEMORY = re.compile(r"^\d+[KMGT]?$")


def _slurm(table, where: Where) -> Slurm:
    if not isinstance(table, dict):
        where.fail("slurm must be a table ([lab.slurm])")
    types = {f.name: type(f.default) for f in dataclasses.fields(Slurm)}
    out = {}
    for key, value in table.items():
        if key not in types:
            where.fail(f"unknown key {key!r}{suggest(key, types)} (keys: "
                       f"{', '.join(types)})", key)
        want = list if types[key] is tuple else types[key]
        if not isinstance(value, want) or isinstance(value, bool):
            where.fail(f"{key} must be {type_name(types[key])}, got {value!r}", key)
        out[key] = tuple(value) if want is list else value
    for key in ("gpus", "cpus", "concurrency"):
        if out.get(key, 0) < 0:
            where.fail(f"{key} must be 0 or more, got {out[key]}", key)
    if not 1 <= out.get("warning_s", 120) <= 65535:
        where.fail(f"warning_s must be from 1 to 65535 seconds, got {out['warning_s']}",
                   "warning_s")
    if out.get("time") and not SLURM_TIME.match(out["time"]):
        where.fail(f"time = {out['time']!r} is not a Slurm time limit (minutes, "
                   "\"HH:MM:SS\" or \"D-HH:MM:SS\")", "time")
    if out.get("memory") and not SLURM_MEMORY.match(out["memory"]):
        where.fail(f"memory = {out['memory']!r} is not a Slurm size (a number with K, M, "
                   "G or T, e.g. \"16G\")", "memory")
    for item in out.get("extra", ()):
        if not isinstance(item, str) or not item.startswith("-") or "\n" in item:
            where.fail(f"extra holds sbatch options, each a string such as \"--qos=high\", "
                       f"got {item!r}", "extra")
    return Slurm(**out)


def _table(name: str, table, kind: str, where: Where, allowed=None) -> None:
    if not isinstance(table, dict):
        where.fail(f"{kind}.{name} must be a table")
    for key in table if allowed is not None else ():
        if key not in allowed:
            where.fail(f"unknown key {key!r}{suggest(key, allowed)}", key)


def _experiments(raw: dict, defaults: Settings, top: Where) -> dict[str, Experiment]:
    if not raw:
        top.fail("no experiments: add an [experiment.NAME] table")
    experiments = {n: _experiment(n, t, defaults, top.sub(f"experiment.{n}"))
                   for n, t in raw.items()}
    for exp in experiments.values():
        problem = _init_problem(exp.settings, exp.name, experiments,
                                "an experiment cannot start from itself")
        if problem:
            top.sub(f"experiment.{exp.name}").fail(problem, "init")
    for start in experiments.values():
        chain = [start.name]
        while (dep := experiments[chain[-1]].needs) is not None:
            if dep in chain:
                top.sub(f"experiment.{start.name}").fail(
                    f"dependency cycle: {' -> '.join(chain + [dep])}", "init")
            chain.append(dep)
    return experiments


def _experiment(name: str, table, defaults: Settings, where: Where) -> Experiment:
    _table(name, table, "experiment", where)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        where.fail("experiment names may hold letters, digits, _ . and - only")
    for key in ("title", "group", "description"):
        if key in table and not isinstance(table[key], str):
            where.fail(f"{key} must be a string", key)
    expect = None
    if "expect" in table:
        e = table["expect"]
        if not isinstance(e, dict) or set(e) != {"metric", "value"}:
            where.fail('expect must be { metric = "...", value = 0.78 }', "expect")
        if e["metric"] not in METRICS:
            where.fail(f"expect.metric {e['metric']!r} is not one of {', '.join(METRICS)}"
                       f"{suggest(e['metric'], METRICS)}", "expect")
        if not isinstance(e["value"], (int, float)) or isinstance(e["value"], bool):
            where.fail("expect.value must be a number", "expect")
        expect = Expect(e["metric"], float(e["value"]))
    reference = None
    if "reference" in table:
        r = table["reference"]
        number = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
        if not isinstance(r, dict) or not {"value", "source"} <= set(r) <= \
                {"value", "source", "wall_s"} or not number(r["value"]) or \
                not isinstance(r["source"], str) or not number(r.get("wall_s", 0)):
            where.fail('reference must be { value = 0.9074, source = "where it is published" '
                       '} (and optionally wall_s = its wall time in seconds)', "reference")
        reference = Reference(float(r["value"]), r["source"],
                              float(r["wall_s"]) if "wall_s" in r else None)
    own = {k: v for k, v in table.items() if k not in EXPERIMENT_KEYS}
    settings = with_settings(defaults, own, where)
    check_consistency(settings, where)
    return Experiment(name=name, title=table.get("title", name), group=table.get("group", ""),
                      description=table.get("description", ""), settings=settings,
                      overrides=own, expect=expect, reference=reference)


def _experiment_names(names, experiments: dict, key: str, where: Where) -> None:
    for n in names:
        if n not in experiments:
            where.fail(f'{key} = {n!r}: no experiment named "{n}"{suggest(n, experiments)}',
                       key)


def _compare(name: str, table, experiments: dict, sweeps: dict, where: Where) -> Compare:
    _table(name, table, "compare", where,
           ("title", "kind", "experiments", "finetune", "sweeps", "holdout"))
    kind = table.get("kind", "table")
    if kind not in COMPARE_KINDS:
        where.fail(f"kind = {kind!r} is not one of {', '.join(COMPARE_KINDS)}", "kind")
    names = table.get("experiments", [] if table.get("sweeps") else None)
    if not isinstance(names, list) or not (names or table.get("sweeps")) or \
            not all(isinstance(n, str) for n in names):
        where.fail("experiments must be a non-empty list of experiment names", "experiments")
    for n in names:
        if n not in experiments:
            where.fail(f'no experiment named "{n}"{suggest(n, experiments)}', "experiments")
    finetune = table.get("finetune", "")
    if finetune and (kind != "ssl" or finetune not in sweeps):
        where.fail(f'finetune = {finetune!r}: name a [sweep.NAME] of fine-tunes (with kind = '
                   f'"ssl"){suggest(finetune, sweeps)}', "finetune")
    plans = table.get("sweeps", [])
    if not isinstance(plans, list) or not all(isinstance(n, str) for n in plans):
        where.fail("sweeps must be a list of sweep names", "sweeps")
    for n in plans:
        if kind not in SWEEP_KINDS or n not in sweeps:
            where.fail(f'sweeps = [{n!r}]: name [sweep.NAME]s (with kind = "transfer", '
                       f'"forecast" or "optimus"){suggest(n, sweeps)}', "sweeps")
    if kind == "optimus" and (len(plans) != 1 or names):
        where.fail('kind = "optimus" studies one sweep: sweeps = ["NAME"] and no experiments',
                   "sweeps")
    holdout = table.get("holdout", "")
    if not isinstance(holdout, str) or (holdout and kind != "optimus"):
        where.fail('holdout names a model of the sweep (with kind = "optimus")', "holdout")
    return Compare(name, table.get("title", name), kind, tuple(names), finetune, tuple(plans),
                   holdout)


def _sweep(name: str, table, experiments: dict, where: Where) -> Sweep:
    _table(name, table, "sweep", where, ("title", "group", "base", "axes", "plot"))
    if name in experiments:
        where.fail(f'sweep "{name}" has the name of an experiment; runs are stored by name, '
                   "so give it another")
    bases = table.get("base")
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not bases:
        where.fail("base must be an experiment name or a list of them", "base")
    _experiment_names(bases, experiments, "base", where)
    axes = table.get("axes")
    if not isinstance(axes, dict) or not axes:
        where.fail("axes must be a table of setting = [values], e.g. "
                   "axes = { lr = [0.01, 0.1] }", "axes")
    checked = []
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            where.fail(f"axes.{key} must be a non-empty list of values", "axes")
        checked.append((key, tuple(check_setting(key, v, where.at("axes"))
                                   for v in values)))
    plot = table.get("plot", "")
    if plot and plot not in axes:
        where.fail(f"plot = {plot!r} is not one of the axes ({', '.join(axes)})", "plot")
    sweep = Sweep(name, table.get("title", name), table.get("group", "Sweeps"), tuple(bases),
                  tuple(checked), plot)
    _check_points(sweep, experiments, where.at("axes"))
    return sweep


def _ablation(name: str, table, experiments: dict, sweeps: dict, where: Where) -> Ablation:
    _table(name, table, "ablation", where,
           ("title", "group", "base", "components", "mode", "seeds"))
    if name in experiments or name in sweeps:
        where.fail(f'ablation "{name}" has the name of an experiment or sweep')
    base = table.get("base")
    _experiment_names([base], experiments, "base", where)
    comps = table.get("components")
    if not isinstance(comps, dict) or not comps:
        where.fail("components must be a table of name = { setting = value, ... }, e.g. "
                   "components = { ema = { ema = 0.999 } }", "components")
    checked = []
    for cname, overrides in comps.items():
        if not isinstance(overrides, dict) or not overrides:
            where.fail(f"components.{cname} must be a table of settings that switch it on",
                       "components")
        checked.append((cname, tuple(
            f"{k}={toml_value(check_setting(k, v, where.at('components')))}"
            for k, v in overrides.items())))
    mode = table.get("mode", "add_one")
    if mode not in ABLATION_MODES:
        where.fail(f"mode = {mode!r} is not one of {', '.join(ABLATION_MODES)}"
                   f"{suggest(str(mode), ABLATION_MODES)}", "mode")
    seeds = table.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        where.fail(f"seeds must be a whole number of at least 1, got {seeds!r}", "seeds")
    ablation = Ablation(name, table.get("title", name), table.get("group", "Ablations"), base,
                        tuple(checked), mode, seeds)
    _check_points(ablation, experiments, where.at("components"))
    return ablation


def _check_points(plan, experiments: dict, where: Where) -> None:
    for label, base, overrides in plan.points():
        try:
            s = apply_overrides(experiments[base].settings, overrides)
        except ConfigError as exc:
            where.fail(f"point {label}: {exc.message}")
        problem = _init_problem(s, base, experiments, "the point's own base")
        if problem:
            where.fail(f"point {label}: {problem}")


def _init_problem(s: Settings, own: str, experiments: dict, itself: str) -> str | None:
    """What is wrong with a run of `own` starting from s.init: an experiment name that is
    no experiment, or its own name (a file is checked when the run starts)."""
    dep = needs(s)
    if dep and dep == own:
        return f'init = "{dep}": {itself}'
    if dep and dep not in experiments:
        return f'init = "{dep}": no experiment named "{dep}"{suggest(dep, experiments)}'
    return None


def dependency_chain(config: Config, name: str) -> list[str]:
    """The experiments `name` needs, farthest first, ending with `name`."""
    chain = [name]
    while (dep := config.experiment(chain[0]).needs) is not None:
        chain.insert(0, dep)
    return chain
