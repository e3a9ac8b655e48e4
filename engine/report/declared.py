"""Runs against what their experiment declares: a table's "measured" figure is the
latest successful run at the declared settings, and a run at other settings (a smoke run
with limit_train=500, an epochs override, an experiments.toml edited since) is marked
with a footnote saying how it differs. No torch."""
from __future__ import annotations

from pathlib import Path

from engine.core import rundir as rd
from engine.core.config import Config, ConfigError
from engine.core.settings import settings_dict
from engine.core.table import Table
from engine.runs.create import resolve_settings

MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


def gaps(config: Config, run_dir: Path) -> list[str]:
    """`key=value` for each recorded setting of an experiment's run that is not what the
    experiment declares now; [] for a sweep's or ablation's point (its own plan says)."""
    run = rd.read_config(run_dir)
    recorded, name = run.get("settings") or {}, run.get("experiment")
    if run.get("sweep") or name not in config.experiments:
        return []
    try:
        declared = settings_dict(resolve_settings(config, name, []))
    except ConfigError:
        return []
    return [f"{k}={rd.toml_value(recorded[k])}" for k, v in declared.items()
            if k in recorded and recorded[k] != v]


def latest_at_declared(config: Config, runs_dir: Path, name: str) -> rd.Run | None:
    """The latest successful run at `name`'s declared settings; failing that, the latest
    successful run (which the table then marks)."""
    done = [r for r in rd.list_runs(runs_dir, name) if r.raw_state == "done"]
    return next((r for r in done if not gaps(config, r.path)), done[0] if done else None)


def footnote(config: Config, table: Table) -> Table:
    """Mark each row whose runs are not at their experiment's declared settings: a
    superscript after its first cell and a note saying how they differ."""
    if len(table.runs) != len(table.rows):
        return table
    n = 0
    for i, (row, paths) in enumerate(zip(table.rows, table.runs)):
        marked = [(Path(p), g) for p in paths if (g := gaps(config, Path(p)))]
        if not marked or not isinstance(row[0], str):
            continue
        mark = MARKS[n] if n < len(MARKS) else f"[{n + 1}]"
        n += 1
        row[0] = f"{row[0]} {mark}"
        lines = [f"{path.parent.name}/{path.name} is not at the declared settings: "
                 f"{', '.join(g)}" for path, g in marked]
        table.notes += [f"{mark} {line}" for line in lines]
        table.row_notes[i] = "; ".join(lines)
    return table
