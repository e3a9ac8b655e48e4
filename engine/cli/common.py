"""What every command group shares: the experiments file, run references, printing."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.core import rundir as rd
from engine.core.config import ConfigError, load
from engine.core.errors import RunError
from engine.core.settings import suggest
from engine.core.table import Table


def config_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("ROTUNDA_CONFIG")
    return Path(env) if env else Path("experiments.toml")


def print_table(table: Table) -> None:
    """Rich in a terminal; plain text, nothing cut, when piped (or without rich, as on a
    bare GPU box)."""
    try:
        from rich.console import Console
    except ImportError:
        Console = None
    if Console is None or not sys.stdout.isatty():
        print(table.to_text(), end="")
        return
    Console().print(table.to_rich())


def make_console(args):
    """Rich output for gallery and dataset: --ansi forces 24-bit colour (the app reads it
    with Text.from_ansi), --width the columns to lay out for."""
    from rich.console import Console

    return Console(force_terminal=True if args.ansi else None,
                   color_system="truecolor" if args.ansi else "auto", width=args.width or None)


def find(args, ref: str, tables: list[str] = ()) -> Path:
    """A run the user named: a path to its directory (anywhere), EXPERIMENT/RUN_ID, a
    unique run id, or an experiment's name for its latest run (inside the runs folder;
    said on stderr when it has several). `tables`: the comparisons the name could also
    have been (export), for the message."""
    runs_dir = runs_dir_loose(args)
    path = rd.find_run(runs_dir, ref, anywhere=True)
    if path is not None:
        return path
    runs = rd.list_runs(runs_dir, ref) if ref and "/" not in ref and ref[0] != "." else []
    if runs:
        if len(runs) > 1:
            print(f"{ref}: its latest run, {runs[0].run_id} (of {len(runs)}; "
                  f"{ref}/RUN_ID names another)", file=sys.stderr)
        return runs[0].path
    known = [*tables, *rd.run_folders(runs_dir)]
    what = (f"comparison ({', '.join(tables)}) or run" if tables else "run")
    raise RunError(f"no {what} matches {ref!r}{suggest(ref, known)}: a run is a run "
                   f"directory (one holding {rd.STATUS}), an experiment with runs, "
                   f"EXPERIMENT/RUN_ID or a unique run id in {runs_dir} "
                   "(--runs-dir names another runs folder)")


def runs_dir_loose(args) -> Path:
    """--runs-dir, else the config's, else ./runs: status, resume, cancel and gallery only
    read runs, so they work without experiments.toml and with a broken one (the runs
    folder is then [lab] runs_dir if that much can be read, else runs/ beside the file)."""
    if args.runs_dir:
        return Path(args.runs_dir).resolve()
    path = config_path(args.config)
    if not path.exists():
        return Path("runs").resolve()
    try:
        return load(path).runs_dir()
    except ConfigError as exc:
        print(f"note: {exc}", file=sys.stderr)
        from engine.core.config import tomllib
        try:
            lab = tomllib.loads(path.read_text(encoding="utf-8")).get("lab", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            lab = {}
        runs = lab.get("runs_dir") if isinstance(lab, dict) else None
        return (path.parent / (runs if isinstance(runs, str) else "runs")).resolve()


def ended(run_dir: Path, state: str) -> int:
    """A foreground run's last line and exit code: done, or its state and error."""
    if state != "done":
        status = rd.read_json(run_dir / rd.STATUS) or {}
        print(f"{run_dir.name}: {state}: {status.get('error') or ''}", file=sys.stderr)
        return 1
    print(f"{run_dir.parent.name}/{run_dir.name}: done")
    return 0


def reports_dir(args) -> Path:
    return Path(args.out) if args.out else config_path(args.config).resolve().parent / "reports"


def cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def run_args(sp) -> None:
    sp.add_argument("name", help="experiment (or sweep) name")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a setting (repeatable), e.g. --set epochs=2")


def train(*args, **kwargs) -> str:
    """engine.train.execute.execute, imported once a run holds its slot (torch takes
    seconds to import; a queued run should not pay it)."""
    from engine.train.execute import execute

    return execute(*args, **kwargs)
