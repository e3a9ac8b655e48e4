"""Commands that read finished runs into tables and files: compare, export, report, diff,
optimus."""
from __future__ import annotations

from pathlib import Path

from engine.cli.common import config_path, find, print_table
from engine.core.config import ConfigError, load
from engine.report.compare import compare_table, table_names


def cmd_compare(args) -> int:
    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    names = table_names(config) if args.name == "all" else [args.name]
    for name in names:
        table = compare_table(config, name, runs_dir)
        if args.format == "markdown":  # for a report: with run ids and commits
            print(table.traced().to_markdown())
        elif args.format == "csv":
            print(table.traced().to_csv(), end="")
        else:
            print_table(table)
    return 0


def cmd_export(args) -> int:
    from engine.report.export import export_named, plot_runs

    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    out_dir = Path(args.out) if args.out else config.root / "reports"
    names = table_names(config) if args.name == "all" else [args.name]
    written = []
    for name in names:
        if name in table_names(config):
            written += export_named(config, name, runs_dir, out_dir)
        else:
            run_dir = find(args, name, tables=table_names(config))
            written.append(plot_runs([(run_dir.parent.name, run_dir)],
                                     run_dir / "curves.png", f"{run_dir.parent.name}/{run_dir.name}"))
    for p in written:
        print(p)
    return 0


def cmd_report(args) -> int:
    from engine.report.document import report_names, write_report

    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    names = report_names(config, args.name)
    for name in names:  # an unknown name: the usual one line, before anything is written
        compare_table(config, name, runs_dir)
    out_dir = Path(args.out) if args.out else config.root / "reports"
    doc, *files = write_report(config, names, runs_dir, out_dir)
    print(f"{doc} ({len(files)} files beside it in {doc.parent / 'figures'})")
    return 0


def cmd_diff(args) -> int:
    from engine.report.diff import diff_table

    print_table(diff_table(find(args, args.a), find(args, args.b)))
    return 0


def cmd_optimus(args) -> int:
    from engine.perf.optimus import study
    from engine.report.optimus import export_study, fits_table, time_table

    config = load(config_path(args.config))
    if args.target is not None and not 0 < args.target <= 1:
        raise ConfigError(f"--target {args.target}: an accuracy between 0 and 1 (0.92)")
    if args.bandwidth_gbps <= 0 or args.latency_ms < 0:
        raise ConfigError("--bandwidth-gbps must be above 0 and --latency-ms at least 0")
    st = study(config, args.sweep, config.runs_dir(args.runs_dir), args.holdout, args.target,
               args.depth or (), Path(args.speed) if args.speed else None,
               args.bandwidth_gbps, args.latency_ms)
    for table in (fits_table(st), time_table(st)):
        print_table(table)
        print()
    if not args.no_files:
        out_dir = Path(args.out) if args.out else config.root / "reports"
        for p in export_study(st, out_dir):
            print(p)
    return 0


def register(sub, common) -> None:
    c = sub.add_parser("compare", parents=[common], help="print a comparison table")
    c.add_argument("name", help="a [compare.NAME] of the TOML, or all")
    c.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
    c.set_defaults(fn=cmd_compare)
    ex = sub.add_parser("export", parents=[common],
                        help="comparison as Markdown+CSV+PNG, or a run's curves as PNG")
    ex.add_argument("name", help="a comparison name, all, or a run")
    ex.add_argument("--out", metavar="DIR", help="folder for comparisons (default reports/)")
    ex.set_defaults(fn=cmd_export)
    rp = sub.add_parser("report", parents=[common], help=(
        "one Markdown document to hand in: every table (expected against measured), the "
        "curves and plots as PNG, what is missing, each run's provenance and command"))
    rp.add_argument("name", help="a comparison, sweep or ablation name, or all")
    rp.add_argument("--out", metavar="DIR", help="folder for NAME.md and figures/ (default reports/)")
    rp.set_defaults(fn=cmd_report)
    df = sub.add_parser("diff", parents=[common], help=(
        "what differs between two runs: settings, environment and code, data; then their "
        "figures"))
    df.add_argument("a", help="run directory, EXPERIMENT/RUN_ID or run id")
    df.add_argument("b")
    df.set_defaults(fn=cmd_diff)
    op = sub.add_parser("optimus", parents=[common], help=(
        "the Optimus study of a sweep's runs: loss-model b's per run, regressed on depth, "
        "a held-out depth's curve predicted and checked, time to accuracy against workers"))
    op.add_argument("sweep", help="a [sweep.NAME] over models (e.g. optimus_depths)")
    op.add_argument("--holdout", metavar="MODEL",
                    help="the model (or point) to predict and check (default the deepest)")
    op.add_argument("--target", type=float, metavar="ACC",
                    help="target test accuracy (default the base experiment's expect)")
    op.add_argument("--depth", type=int, action="append", metavar="N",
                    help="also predict the b's of this depth (repeatable), e.g. 50")
    op.add_argument("--speed", metavar="JSON",
                    help="engine throughput's JSON: fit theta0, theta1 to its step times")
    op.add_argument("--bandwidth-gbps", type=float, default=10.0,
                    help="assumed parameter-server link, Gb/s (default 10)")
    op.add_argument("--latency-ms", type=float, default=0.5,
                    help="assumed per-connection overhead per step, ms (default 0.5)")
    op.add_argument("--out", metavar="DIR", help="folder for optimus-SWEEP.* (default reports/)")
    op.add_argument("--no-files", action="store_true", help="print the tables only")
    op.set_defaults(fn=cmd_optimus)
