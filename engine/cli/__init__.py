"""python -m engine: everything the app does, scriptable.

Exit codes: 0 success; 1 a run ended failed, diverged or cancelled; 2 bad input.
One module per command group, each registering its sub-commands. The CLI is the one place
that imports inside functions: `--help` and the run-directory commands stay fast, and
torch loads only for the commands that train or measure.
"""
from __future__ import annotations

import argparse
import sys

from engine.cli import measure, runs, tables
from engine.core.errors import RotundaError

GROUPS = (runs, tables, measure)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=(
        "Rotunda's engine: run, resume, watch and compare the experiments of experiments.toml."))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="experiments file (default ./experiments.toml or $ROTUNDA_CONFIG)")
    common.add_argument("--runs-dir", metavar="DIR", help="runs folder (default: the config's)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except RotundaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
