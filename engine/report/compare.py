"""Every table `compare` can show, by name: a [compare.NAME] of one of the registry's
COMPARE_KINDS (one module each in engine/report/kinds/, dispatched by name), a sweep or
an ablation. Pure Python over run directories (no torch): the CLI and the app render
the same Table objects and export them as Markdown or CSV."""
from __future__ import annotations

import importlib
from pathlib import Path

from engine.core.config import Config, ConfigError
from engine.core.registry import COMPARE_KINDS
from engine.core.settings import suggest
from engine.core.table import TEXT, Table
from engine.report.declared import footnote, latest_at_declared
from engine.report.diff import differs_cell, varying
from engine.report.plans import ablation_table, sweep_table
from engine.report.rows import point_runs


def table_names(config: Config) -> list[str]:
    """Everything `compare` can show: [compare.*] tables, sweeps, ablations."""
    return list(config.compares) + list(config.sweeps) + list(config.ablations)


def table_runs(config: Config, name: str, runs_dir: Path) -> list[tuple[str, Path]]:
    """(label, run directory) of the runs behind a table, for its curves."""
    if config.plan(name) is not None:
        out = []
        for label, runs in point_runs(runs_dir, name).items():
            done = [r for r in runs if r.raw_state == "done"]
            if done and (name in config.sweeps or label.endswith(" seed=0")):
                out.append((label.replace(" seed=0", ""), done[0].path))
        order = {label: i for i, (label, _, _) in enumerate(config.plan(name).points())}
        return sorted(out, key=lambda t: order.get(t[0], order.get(t[0] + " seed=0", 0)))
    comp = config.compares[name]
    return [(e, r.path) for e in comp.experiments
            if (r := latest_at_declared(config, runs_dir, e))] + [
        (f"{sweep} {label}", path) for sweep in comp.sweeps
        for label, path in table_runs(config, sweep, runs_dir)]


def curve(config: Config, name: str, runs_dir: Path,
          table: Table | None = None) -> tuple[str, dict] | None:
    """For a sweep with `plot`: (axis, {base: [(x, acc@best), ...]}) from its done points;
    `table`, its sweep_table when the caller already has it (saves reading every run again)."""
    sweep = config.sweeps.get(name)
    if sweep is None or not sweep.plot:
        return None
    table = table or sweep_table(config, name, runs_dir)
    series: dict[str, list] = {b: [] for b in sweep.bases}
    for (label, base, overrides), row in zip(sweep.points(), table.rows):
        x = next(float(o.split("=", 1)[1]) for o in overrides if o.startswith(sweep.plot + "="))
        if row[1] is not None:
            series[base].append((x, row[1]))
    return sweep.plot, series


def compare_table(config: Config, name: str, runs_dir: Path) -> Table:
    """Any table `compare` can show: a [compare.NAME] of one of COMPARE_KINDS, a sweep or an
    ablation; each experiment's row is its latest successful run."""
    return footnote(config, with_differs(_compare_table(config, name, runs_dir)))


def with_differs(table: Table) -> Table:
    """A "Differs in" column: the settings that vary among the runs behind the table,
    with each row's values, so that a sweep or ablation table explains itself."""
    if len(table.runs) != len(table.rows):
        return table
    keys = varying([p for paths in table.runs for p in paths])
    if not keys:
        return table
    table.columns = table.columns + [("Differs in", TEXT)]
    for row, paths in zip(table.rows, table.runs):
        within = varying(paths)  # an ablation row's seeds
        cell = differs_cell(paths[0], [k for k in keys if k not in within]) if paths else "-"
        row.append(cell + (f" ({', '.join(within)} varies)" if within else ""))
    return table


def _compare_table(config: Config, name: str, runs_dir: Path) -> Table:
    if name in config.sweeps:
        return sweep_table(config, name, runs_dir)
    if name in config.ablations:
        return ablation_table(config, name, runs_dir)
    if name not in config.compares:
        names = table_names(config)
        raise ConfigError(f"no comparison or sweep named {name!r}{suggest(name, names)}"
                          f" (declared: {', '.join(names) or 'none'})", str(config.path))
    comp = config.compares[name]
    return importlib.import_module(COMPARE_KINDS[comp.kind]).table(config, comp, runs_dir)
