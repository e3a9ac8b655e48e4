"""python -m engine: everything the app does, scriptable.

Exit codes: 0 success; 1 a run ended failed, diverged or cancelled; 2 bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import rundir as rd
from .analysis import PCT, TEXT, Table, compare_table, fmt, runs_table, table_names
from .config import ConfigError, load
from .errors import RotundaError, RunError
from .launch import cancel, launch_detached, launch_sweep_detached
from .paleo import DEVICES as DEVICE_NAMES
from .runner import resume_run, run_experiment, run_sweep


def _config_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("ROTUNDA_CONFIG")
    return Path(env) if env else Path("experiments.toml")


def _print_table(table: Table) -> None:
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


def cmd_list(args) -> int:
    config = load(_config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    table = Table(f"Experiments in {config.path.name}", [
        ("Group", TEXT), ("Name", TEXT), ("Task", TEXT), ("Model", TEXT), ("Data", TEXT),
        ("Epochs", TEXT), ("Init", TEXT), ("Expected", PCT), ("Latest", TEXT)])
    for group, exps in config.groups().items():
        for e in exps:
            runs = rd.list_runs(runs_dir, e.name)
            s = e.settings
            table.rows.append([group, e.name, s.task, s.model, s.dataset, str(s.epochs),
                               str(s.init or "-"), e.expect.value if e.expect else None,
                               f"{runs[0].state} {runs[0].run_id}" if runs else "-"])
    table.whole = {"Name", "Latest"}
    if config.compares:
        table.notes.append("comparisons: " + ", ".join(config.compares))
    if config.sweeps or config.ablations:
        table.notes.append("sweeps and ablations: "
                           + ", ".join(list(config.sweeps) + list(config.ablations)))
    _print_table(table)
    return 0


def cmd_run(args) -> int:
    config = load(_config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    results = run_experiment(config, args.name, args.set or [], runs_dir, args.with_deps,
                             args.run_id, queue=not args.now, echo=not args.quiet)
    run_dir, state = results[-1]
    if state != "done":
        status = rd.read_json(run_dir / rd.STATUS) or {}
        print(f"{run_dir.parent.name}: {state}: {status.get('error') or ''} "
              f"(log: {run_dir / rd.LOG})", file=sys.stderr)
        return 1
    summary = rd.read_json(run_dir / rd.SUMMARY) or {}
    head = summary.get("headline", "test_acc")
    print(f"{args.name}: done; {head.replace('_', ' ')} "
          f"{fmt(summary.get(head + '_at_best'), PCT)} at epoch {summary.get('best_epoch')} "
          f"({summary.get('best_means', 'lowest test loss')}); run {run_dir}")
    return 0


def cmd_sweep(args) -> int:
    config = load(_config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    if config.plan(args.name) is None:
        from .config import suggest
        names = list(config.sweeps) + list(config.ablations)
        raise ConfigError(f"no sweep or ablation named {args.name!r}{suggest(args.name, names)}"
                          f" (declared: {', '.join(names) or 'none'})", str(config.path))
    if args.detach:
        out = launch_sweep_detached(config, args.name, args.set or [], runs_dir)
        print(f"launched sweep {args.name} in the background (early output: {out})")
        return 0
    results = run_sweep(config, args.name, args.set or [], runs_dir, queue=not args.now,
                        echo=not args.quiet)
    if not args.quiet:
        _print_table(compare_table(config, args.name, runs_dir))
    failed = [label for label, _, state in results if state != "done"]
    if failed:
        print(f"{args.name}: {len(failed)} point(s) did not finish: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_optimus(args) -> int:
    from .export import export_table
    from .optimus import export_study, fits_table, study, time_table

    config = load(_config_path(args.config))
    if args.target is not None and not 0 < args.target <= 1:
        raise ConfigError(f"--target {args.target}: an accuracy between 0 and 1 (0.92)")
    if args.bandwidth_gbps <= 0 or args.latency_ms < 0:
        raise ConfigError("--bandwidth-gbps must be above 0 and --latency-ms at least 0")
    st = study(config, args.sweep, config.runs_dir(args.runs_dir), args.holdout, args.target,
               args.depth or (), Path(args.speed) if args.speed else None,
               args.bandwidth_gbps, args.latency_ms)
    for table in (fits_table(st), time_table(st)):
        _print_table(table)
        print()
    if not args.no_files:
        out_dir = Path(args.out) if args.out else config.root / "reports"
        for p in export_study(st, out_dir):
            print(p)
    return 0


def cmd_throughput(args) -> int:
    from .throughput import run_throughput

    config = load(_config_path(args.config))
    from .runner import resolve_settings
    s = resolve_settings(config, args.name, args.set or [])
    out_dir = Path(args.out) if args.out else config.root / "reports"
    result, paths = run_throughput(s, args.name, out_dir, max_batch=args.max_batch,
                                   steps=args.steps, warmup=args.warmup)
    _print_table(result)
    for p in paths:
        print(p)
    return 0


def cmd_bench(args) -> int:
    import json

    from .bench import run_bench
    from .runner import resolve_settings

    config = load(_config_path(args.config))
    settings = {name: resolve_settings(config, name, args.set or []) for name in args.names}
    out_dir = Path(args.out) if args.out else config.root / "reports"
    steps, warmup = args.steps or (50 if _cuda() else 5), args.warmup or (10 if _cuda() else 2)
    workers = args.workers if args.workers >= 0 else min(8, os.cpu_count() or 1)
    results, table, paths = run_bench(settings, out_dir, steps, warmup, workers,
                                      out_dir if args.profile else None)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    _print_table(table)
    for p in paths:
        print(p)
    return 0


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def _console(args):
    """Rich output for gallery and dataset: --ansi forces 24-bit colour (the app reads it
    with Text.from_ansi), --width the columns to lay out for."""
    from rich.console import Console

    return Console(force_terminal=True if args.ansi else None,
                   color_system="truecolor" if args.ansi else "auto", width=args.width or None)


def cmd_gallery(args) -> int:
    from .gallery import predict_gallery, save_png, terminal_grid
    from .pixels import per_row

    run_dir = _find(args, args.run)
    items = predict_gallery(run_dir, args.n)
    console = _console(args)
    console.print(terminal_grid(items, per_row=per_row(console.width)))
    if not args.no_png:
        print(save_png(items, run_dir / "gallery.png", f"{run_dir.parent.name}/{run_dir.name}"))
    return 0


def cmd_dataset(args) -> int:
    import json

    from .datacard import build_card, render_card, save_card_png
    from .runner import resolve_settings

    config = load(_config_path(args.config))
    card = build_card(resolve_settings(config, args.name, args.set or []), args.name)
    out_dir = Path(args.out) if args.out else config.root / "reports"
    png = None if args.no_png else save_card_png(card, out_dir / f"dataset-{args.name}.png")
    if args.json:
        print(json.dumps(card.to_json(png), indent=2))
        return 0
    console = _console(args)
    console.print(render_card(card, console.width))
    if png:
        print(png)
    return 0


def _reports_dir(args) -> Path:
    return Path(args.out) if args.out else _config_path(args.config).resolve().parent / "reports"


def cmd_flops(args) -> int:
    import json

    from .export import export_table
    from .flops import count, layer_table, peak_rows, peaks_table, summary_table
    from .paleo import DEVICES

    gpus = [DEVICES[g] for g in args.gpu] if args.gpu else list(DEVICES.values())
    reports = [count(m, args.size, args.batch, args.classes) for m in args.models]
    stem = f"{'-'.join(args.models)}-{args.size}"
    tables = [(layer_table(r), f"flops-{r.model}-{r.size}") for r in reports] + [
        (summary_table(reports), f"flops-totals-{stem}"),
        (peaks_table(reports, gpus), f"flops-peaks-{stem}")]
    paths = [p for t, name in tables for p in export_table(t, _reports_dir(args), name)]
    if args.json:
        print(json.dumps({"models": [r.to_json() for r in reports],
                          "peaks": peak_rows(reports, gpus)}, indent=2))
        return 0
    for table, _ in tables[len(reports) if args.summary else 0:]:
        _print_table(table)
        print()
    for p in paths:
        print(p)
    return 0


def cmd_timing(args) -> int:
    import json

    from .export import export_table
    from .flops import check_model
    from .registry import MODELS
    from .timing import run_timing, timing_table

    check_model(args.model)
    size = args.size or MODELS[args.model].input_size
    result = run_timing(args.model, size, args.batch, args.classes, args.device, args.steps,
                        args.warmup, args.threads)
    table = timing_table(result)
    paths = export_table(table, _reports_dir(args), f"timing-{args.model}-{size}")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    _print_table(table)
    for p in paths:
        print(p)
    return 0


def cmd_launch(args) -> int:
    config = load(_config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    config.experiment(args.name)
    run_id, out = launch_detached(config, args.name, args.set or [], runs_dir)
    print(f"launched {args.name} as {runs_dir / args.name / run_id} (early output: {out})")
    return 0


def _find(args, ref: str) -> Path:
    runs_dir = _runs_dir_loose(args)
    path = rd.find_run(runs_dir, ref)
    if path is None:
        raise RunError(f"no run matches {ref!r} in {runs_dir} (give a run directory "
                       "inside it, EXPERIMENT/RUN_ID or a unique run id; --runs-dir names "
                       "another runs folder)")
    return path


def _runs_dir_loose(args) -> Path:
    """--runs-dir, else the config's, else ./runs: status, resume, cancel and gallery only
    read runs, so they work without experiments.toml and with a broken one (the runs
    folder is then [lab] runs_dir if that much can be read, else runs/ beside the file)."""
    if args.runs_dir:
        return Path(args.runs_dir).resolve()
    path = _config_path(args.config)
    if not path.exists():
        return Path("runs").resolve()
    try:
        return load(path).runs_dir()
    except ConfigError as exc:
        print(f"note: {exc}", file=sys.stderr)
        from .config import tomllib
        try:
            lab = tomllib.loads(path.read_text(encoding="utf-8")).get("lab", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            lab = {}
        runs = lab.get("runs_dir") if isinstance(lab, dict) else None
        return (path.parent / (runs if isinstance(runs, str) else "runs")).resolve()


def cmd_job(args) -> int:
    """A prepared run directory as a batch job runs it (engine/launch/slurm.py)."""
    from .runner import run_job

    run_dir = Path(args.run_dir).resolve()
    state = run_job(run_dir, echo=not args.quiet)
    if state not in ("done", "queued"):  # queued: stopped for a requeue
        status = rd.read_json(run_dir / rd.STATUS) or {}
        print(f"{run_dir.name}: {state}: {status.get('error') or ''}", file=sys.stderr)
        return 1
    return 0


def _ended(run_dir: Path, state: str) -> int:
    """A foreground run's last line and exit code: done, or its state and error."""
    if state != "done":
        status = rd.read_json(run_dir / rd.STATUS) or {}
        print(f"{run_dir.name}: {state}: {status.get('error') or ''}", file=sys.stderr)
        return 1
    print(f"{run_dir.parent.name}/{run_dir.name}: done")
    return 0


def cmd_resume(args) -> int:
    run_dir = _find(args, args.run)
    return _ended(run_dir, resume_run(run_dir, queue=not args.now, echo=not args.quiet,
                                      gpus=args.gpus))


def cmd_rerun(args) -> int:
    from .runner import rerun_run

    new, state = rerun_run(_find(args, args.run), queue=not args.now, echo=not args.quiet)
    for line in (new / rd.LOG).read_text(encoding="utf-8").splitlines():
        if " rerun: " in line:
            print("warning: " + line.split(" rerun: ", 1)[1], file=sys.stderr)
    return _ended(new, state)


def cmd_diff(args) -> int:
    from .rundiff import diff_table

    _print_table(diff_table(_find(args, args.a), _find(args, args.b)))
    return 0


def cmd_status(args) -> int:
    runs_dir = _runs_dir_loose(args)
    runs = rd.list_runs(runs_dir, args.experiment)
    if not runs:
        print(f"no runs in {runs_dir}")
        return 0
    _print_table(runs_table(runs[: args.limit] if args.limit else runs))
    return 0


def cmd_compare(args) -> int:
    config = load(_config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    names = table_names(config) if args.name == "all" else [args.name]
    for name in names:
        table = compare_table(config, name, runs_dir)
        if args.format == "markdown":  # for a report: with run ids and commits
            print(table.traced().to_markdown())
        elif args.format == "csv":
            print(table.traced().to_csv(), end="")
        else:
            _print_table(table)
    return 0


def cmd_cancel(args) -> int:
    print(cancel(_find(args, args.run)))
    return 0


def cmd_export(args) -> int:
    from .export import export_named, plot_runs

    config = load(_config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    out_dir = Path(args.out) if args.out else config.root / "reports"
    names = table_names(config) if args.name == "all" else [args.name]
    written = []
    for name in names:
        if name in table_names(config):
            written += export_named(config, name, runs_dir, out_dir)
        else:
            run_dir = _find(args, name)
            written.append(plot_runs([(run_dir.parent.name, run_dir)],
                                     run_dir / "curves.png", f"{run_dir.parent.name}/{run_dir.name}"))
    for p in written:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=(
        "Rotunda's engine: run, resume, watch and compare the experiments of experiments.toml."))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="experiments file (default ./experiments.toml or $ROTUNDA_CONFIG)")
    common.add_argument("--runs-dir", metavar="DIR", help="runs folder (default: the config's)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", parents=[common], help="the experiments").set_defaults(fn=cmd_list)

    def run_args(sp):
        sp.add_argument("name", help="experiment (or sweep) name")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a setting (repeatable), e.g. --set epochs=2")
    r = sub.add_parser("run", parents=[common], help="train an experiment in the foreground")
    run_args(r)
    r.add_argument("--with-deps", action="store_true",
                   help="first run dependencies (init = ...) that have no successful run")
    r.add_argument("--run-id", help=argparse.SUPPRESS)
    r.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    r.add_argument("--quiet", action="store_true", help="no progress output (log.txt only)")
    r.set_defaults(fn=cmd_run)

    la = sub.add_parser("launch", parents=[common],
                        help="queue a run in the background, detached from this terminal")
    run_args(la)
    la.set_defaults(fn=cmd_launch)

    sw = sub.add_parser("sweep", parents=[common],
                        help="run every point of a [sweep.NAME] or [ablation.NAME] (done ones are skipped)")
    run_args(sw)
    sw.add_argument("--detach", action="store_true", help="queue it in the background")
    sw.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(fn=cmd_sweep)

    tp = sub.add_parser("throughput", parents=[common], help=(
        "training images/s and peak memory against batch size, powers of two until "
        "out of memory (or --max-batch)"))
    run_args(tp)
    tp.add_argument("--max-batch", type=int, default=0,
                    help="largest batch to try (default: until OOM on CUDA, 64 on CPU)")
    tp.add_argument("--steps", type=int, default=10, help="timed steps per batch size")
    tp.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    tp.add_argument("--out", metavar="DIR", help="folder for the table, plot, JSON")
    tp.set_defaults(fn=cmd_throughput)

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

    be = sub.add_parser("bench", parents=[common], help=(
        "training images/s and peak memory: the engine's data path vs a conventional "
        "DataLoader pipeline vs the model alone, same process and device"))
    be.add_argument("names", nargs="*", default=["part1", "part3"],
                    help="experiments whose settings to measure (default: part1 part3)")
    be.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a setting for every experiment measured")
    be.add_argument("--steps", type=int, default=0, help="timed steps per path (50 GPU, 5 CPU)")
    be.add_argument("--warmup", type=int, default=0, help="untimed steps first (10 GPU, 2 CPU)")
    be.add_argument("--workers", type=int, default=-1,
                    help="DataLoader workers for the conventional path (default: cores, at most 8)")
    be.add_argument("--profile", action="store_true",
                    help="also write a torch.profiler table and Chrome trace of the engine path")
    be.add_argument("--json", action="store_true", help="print the results as JSON")
    be.add_argument("--out", metavar="DIR",
                    help="folder for bench.md/.csv/.json (default reports/)")
    be.set_defaults(fn=cmd_bench)

    ga = sub.add_parser("gallery", parents=[common],
                        help="test images with true and predicted labels (terminal + PNG)")
    ga.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    ga.add_argument("--n", type=int, default=20)
    ga.add_argument("--no-png", action="store_true", help="terminal only")
    ga.add_argument("--ansi", action="store_true", help="colours even when not a terminal")
    ga.add_argument("--width", type=int, default=0, help="terminal columns")
    ga.set_defaults(fn=cmd_gallery)

    ds = sub.add_parser("dataset", parents=[common], help=(
        "an experiment's dataset card: classes, images per class, image sizes, four "
        "samples (terminal + PNG)"))
    run_args(ds)
    ds.add_argument("--json", action="store_true", help="print the card as JSON")
    ds.add_argument("--out", metavar="DIR", help="folder for dataset-NAME.png (default reports/)")
    ds.add_argument("--no-png", action="store_true", help="terminal only")
    ds.add_argument("--ansi", action="store_true", help="colours even when not a terminal")
    ds.add_argument("--width", type=int, default=0, help="terminal columns")
    ds.set_defaults(fn=cmd_dataset)

    rs = sub.add_parser("resume", parents=[common], help="continue a killed or cancelled run")
    rs.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    rs.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    rs.add_argument("--quiet", action="store_true")
    rs.add_argument("--gpus", type=int, metavar="N",
                    help="train on N processes from here (1 continues a multi-GPU run alone)")
    rs.set_defaults(fn=cmd_resume)
    jb = sub.add_parser("job", parents=[common], help=(
        "run a prepared run directory as its batch job does: its first start, or a resume "
        "after a requeue (the Slurm executor's job script)"))
    jb.add_argument("run_dir")
    jb.add_argument("--quiet", action="store_true")
    jb.set_defaults(fn=cmd_job)

    rr = sub.add_parser("rerun", parents=[common], help=(
        "a new run with exactly a run's recorded settings and seed; warns where the code, "
        "environment or data differ"))
    rr.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    rr.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    rr.add_argument("--quiet", action="store_true")
    rr.set_defaults(fn=cmd_rerun)

    df = sub.add_parser("diff", parents=[common], help=(
        "what differs between two runs: settings, environment and code, data; then their "
        "figures"))
    df.add_argument("a", help="run directory, EXPERIMENT/RUN_ID or run id")
    df.add_argument("b")
    df.set_defaults(fn=cmd_diff)

    st = sub.add_parser("status", parents=[common], help="runs and their states")
    st.add_argument("experiment", nargs="?")
    st.add_argument("--limit", type=int, default=0)
    st.set_defaults(fn=cmd_status)

    c = sub.add_parser("compare", parents=[common], help="print a comparison table")
    c.add_argument("name", help="a [compare.NAME] of the TOML, or all")
    c.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
    c.set_defaults(fn=cmd_compare)

    ca = sub.add_parser("cancel", parents=[common], help="stop a run (SIGTERM)")
    ca.add_argument("run")
    ca.set_defaults(fn=cmd_cancel)

    ex = sub.add_parser("export", parents=[common],
                        help="comparison as Markdown+CSV+PNG, or a run's curves as PNG")
    ex.add_argument("name", help="a comparison name, all, or a run")
    ex.add_argument("--out", metavar="DIR", help="folder for comparisons (default reports/)")
    ex.set_defaults(fn=cmd_export)

    fl = sub.add_parser("flops", parents=[common], help=(
        "multiply-adds, parameters and activations per layer (FlopCounterMode on the meta "
        "device: no compute, any size), and time per image at GPUs' published peaks"))
    fl.add_argument("models", nargs="+", metavar="MODEL", help="model name(s) from `list`")
    fl.add_argument("--size", type=int, default=224, help="image size (default 224)")
    fl.add_argument("--batch", type=int, default=1, help="images per pass (default 1)")
    fl.add_argument("--classes", type=int, default=1000, help="head outputs (default 1000)")
    fl.add_argument("--gpu", action="append", type=str.upper, choices=list(DEVICE_NAMES),
                    help="published peaks to predict on (repeatable; default all)")
    fl.add_argument("--summary", action="store_true",
                    help="print only the totals and the GPU table")
    fl.add_argument("--json", action="store_true", help="print the counts as JSON")
    fl.add_argument("--out", metavar="DIR", help="folder for the .md/.csv (default reports/)")
    fl.set_defaults(fn=cmd_flops)

    ti = sub.add_parser("timing", parents=[common], help=(
        "measured forward and backward time per layer on this device against PALEO's "
        "prediction, and the fitted platform percent of peak"))
    ti.add_argument("model", help="model name from `list`")
    ti.add_argument("--size", type=int, default=0,
                    help="image size (default: the model's own input size)")
    ti.add_argument("--batch", type=int, default=8, help="images per pass (default 8)")
    ti.add_argument("--classes", type=int, default=1000, help="head outputs (default 1000)")
    ti.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ti.add_argument("--steps", type=int, default=5, help="timed passes (medians)")
    ti.add_argument("--warmup", type=int, default=2, help="untimed passes first")
    ti.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch (default: torch's own choice)")
    ti.add_argument("--json", action="store_true", help="print the result as JSON")
    ti.add_argument("--out", metavar="DIR", help="folder for the .md/.csv (default reports/)")
    ti.set_defaults(fn=cmd_timing)
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
