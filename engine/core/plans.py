"""Sweeps and ablations: plans that expand into one run per point, each point a base
experiment plus overrides. Declarations only (validated in config.py); no torch."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from engine.core.rundir import toml_value

ABLATION_MODES = ("add_one", "remove_one", "all")


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
        keys = [k for k, _ in self.axes]
        out = []
        for base in self.bases:
            for values in itertools.product(*(vals for _, vals in self.axes)):
                overrides = [f"{k}={toml_value(v)}" for k, v in zip(keys, values)]
                label = " ".join(f"{k}={v}" for k, v in zip(keys, values))
                out.append((f"{base} {label}" if len(self.bases) > 1 else label, base,
                            overrides))
        return out


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
        names = [c for c, _ in self.components]
        on = dict(self.components)
        if self.mode == "add_one":
            sets = [()] + [(n,) for n in names]
        elif self.mode == "remove_one":
            sets = [()] + [tuple(names)] + [tuple(m for m in names if m != n) for n in names]
        else:
            sets = [c for r in range(len(names) + 1) for c in itertools.combinations(names, r)]
        return [(self._label(chosen, names), [o for n in chosen for o in on[n]])
                for chosen in sets]

    def _label(self, chosen: tuple, names: list) -> str:
        if not chosen:
            return "baseline"
        if len(chosen) == len(names) and len(names) > 1:
            return "full"
        if self.mode == "remove_one" and len(chosen) == len(names) - 1:
            return "full-" + next(n for n in names if n not in chosen)
        return "+" + "+".join(chosen)

    def points(self) -> list[tuple[str, str, list[str]]]:
        return [(f"{label} seed={seed}", self.base, overrides + [f"seed={seed}"])
                for label, overrides in self.configs() for seed in range(self.seeds)]
