"""A report a student can hand in: one Markdown document with every declared comparison's
table (expected against measured), the curves and plots of its runs as PNG beside it,
what is missing, and an appendix with each run's provenance and exact command. A partial
lab gives a partial report: a comparison with no runs, or a run without provenance, is
named and skipped."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from engine.core import rundir as rd
from engine.core.config import Config
from engine.core.provenance import PROVENANCE, brief
from engine.report.compare import compare_table, table_names
from engine.report.export import export_named, slug

FIGURES = "figures"


def write_report(config: Config, names: list[str], runs_dir: Path, out_dir: Path,
                 stem: str | None = None) -> list[Path]:
    """REPORT.md (the comparison's name, or "report" for several) and its figures under
    out_dir/figures/; returns the document first, then every file beside it."""
    out_dir = Path(out_dir)
    figures = out_dir / FIGURES
    stem = stem or (names[0] if len(names) == 1 else "report")
    doc = out_dir / f"{slug(stem)}.md"
    lines = [f"# {config.path.name}: {', '.join(names) if len(names) < 4 else 'report'}", "",
             f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by "
             f"`python -m engine report` from {config.path} and the runs in {runs_dir}.", ""]
    written, behind = [], {}
    for name in names:
        table = compare_table(config, name, runs_dir)
        lines += [f"## {table.title}", "", f"`{name}`", ""]
        if not any(table.runs):
            lines += [f"No runs yet: nothing to show ({missing_hint(config, name)}).", ""]
            continue
        files = export_named(config, name, runs_dir, figures)
        written += files
        lines.append(table.traced().to_markdown().split("\n", 1)[1].lstrip("\n"))
        lines += [f"![{p.stem}]({FIGURES}/{p.name})\n" for p in files if p.suffix == ".png"]
        empty = [str(row[0]) for row, paths in zip(table.rows, table.runs) if not paths]
        if empty:
            lines += [f"Missing (no run yet, skipped): {', '.join(empty)}.", ""]
        for paths in table.runs:
            for p in paths:
                behind.setdefault(str(p), Path(p))
    lines += appendix(list(behind.values()))
    out_dir.mkdir(parents=True, exist_ok=True)
    rd.atomic_write_text(doc, "\n".join(lines).rstrip() + "\n")
    return [doc, *written]


def missing_hint(config: Config, name: str) -> str:
    if name in config.sweeps or name in config.ablations:
        return f"python -m engine sweep {name} runs its points"
    return "run its experiments first: python -m engine list shows them"


def appendix(runs: list[Path]) -> list[str]:
    """Each run's provenance (commit, torch, device, data, seed) and the command that
    made it; a run that has none (made before provenance was kept) is named."""
    if not runs:
        return []
    lines = ["## Appendix: the runs behind the figures", "",
             "| run | state | commit | torch | device | data | seed |",
             "| --- | --- | --- | --- | --- | --- | ---: |"]
    commands = []
    for run_dir in sorted(runs, key=lambda p: (p.parent.name, p.name)):
        ref = f"{run_dir.parent.name}/{run_dir.name}"
        status = rd.read_json(run_dir / rd.STATUS) or {}
        prov = rd.read_json(run_dir / PROVENANCE)
        if not isinstance(prov, dict):
            lines.append(f"| {ref} | {status.get('state', '?')} | no provenance.json "
                         "| | | | |")
            continue
        b = brief(prov)
        lines.append(f"| {ref} | {status.get('state', '?')} | {b['commit']} | {b['torch']} | "
                     f"{b['device']} | {b['data']} | {b['seed']} |")
        if b["command"]:
            commands.append(f"- `{ref}`: `{b['command']}`")
    lines.append("")
    if commands:
        lines += ["Commands as each run was started (`python -m engine rerun RUN` repeats "
                  "one with its recorded settings and seed):", "", *commands, ""]
    return lines


def report_names(config: Config, name: str) -> list[str]:
    """`all`: every declared comparison, sweep and ablation; else the one named."""
    names = table_names(config)
    return names if name == "all" else [name]
