"""Commands that measure on this machine (torch, imported inside each): throughput,
bench, gallery, dataset, flops, timing."""
from __future__ import annotations

import os
from pathlib import Path

from engine.cli.common import (
    config_path,
    cuda,
    find,
    make_console,
    print_table,
    reports_dir,
    run_args,
)
from engine.core.config import load
from engine.perf.paleo import DEVICES as DEVICE_NAMES


def cmd_throughput(args) -> int:
    from engine.measure.throughput import run_throughput

    config = load(config_path(args.config))
    from engine.runs.create import resolve_settings
    s = resolve_settings(config, args.name, args.set or [])
    out_dir = Path(args.out) if args.out else config.root / "reports"
    result, paths = run_throughput(s, args.name, out_dir, max_batch=args.max_batch,
                                   steps=args.steps, warmup=args.warmup)
    print_table(result)
    for p in paths:
        print(p)
    return 0


def cmd_bench(args) -> int:
    import json

    from engine.measure.bench import run_bench
    from engine.runs.create import resolve_settings

    config = load(config_path(args.config))
    settings = {name: resolve_settings(config, name, args.set or []) for name in args.names}
    out_dir = Path(args.out) if args.out else config.root / "reports"
    steps, warmup = args.steps or (50 if cuda() else 5), args.warmup or (10 if cuda() else 2)
    workers = args.workers if args.workers >= 0 else min(8, os.cpu_count() or 1)
    results, table, paths = run_bench(settings, out_dir, steps, warmup, workers,
                                      out_dir if args.profile else None)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(table)
    for p in paths:
        print(p)
    return 0


def cmd_gallery(args) -> int:
    from engine.measure.gallery import predict_gallery, save_png, terminal_grid
    from engine.report.pixels import per_row

    run_dir = find(args, args.run)
    items = predict_gallery(run_dir, args.n)
    console = make_console(args)
    console.print(terminal_grid(items, per_row=per_row(console.width)))
    if not args.no_png:
        print(save_png(items, run_dir / "gallery.png", f"{run_dir.parent.name}/{run_dir.name}"))
    return 0


def cmd_dataset(args) -> int:
    import json

    from engine.data.card import build_card, render_card, save_card_png
    from engine.runs.create import resolve_settings

    config = load(config_path(args.config))
    card = build_card(resolve_settings(config, args.name, args.set or []), args.name)
    out_dir = Path(args.out) if args.out else config.root / "reports"
    png = None if args.no_png else save_card_png(card, out_dir / f"dataset-{args.name}.png")
    if args.json:
        print(json.dumps(card.to_json(png), indent=2))
        return 0
    console = make_console(args)
    console.print(render_card(card, console.width))
    if png:
        print(png)
    return 0


def cmd_flops(args) -> int:
    import json

    from engine.measure.flops import (
        count,
        layer_table,
        peak_rows,
        peaks_table,
        summary_table,
    )
    from engine.perf.paleo import DEVICES
    from engine.report.export import export_table

    gpus = [DEVICES[g] for g in args.gpu] if args.gpu else list(DEVICES.values())
    reports = [count(m, args.size, args.batch, args.classes) for m in args.models]
    stem = f"{'-'.join(args.models)}-{args.size}"
    tables = [(layer_table(r), f"flops-{r.model}-{r.size}") for r in reports] + [
        (summary_table(reports), f"flops-totals-{stem}"),
        (peaks_table(reports, gpus), f"flops-peaks-{stem}")]
    paths = [p for t, name in tables for p in export_table(t, reports_dir(args), name)]
    if args.json:
        print(json.dumps({"models": [r.to_json() for r in reports],
                          "peaks": peak_rows(reports, gpus)}, indent=2))
        return 0
    for table, _ in tables[len(reports) if args.summary else 0:]:
        print_table(table)
        print()
    for p in paths:
        print(p)
    return 0


def cmd_timing(args) -> int:
    import json

    from engine.core.registry import MODELS
    from engine.measure.flops import check_model
    from engine.measure.timing import run_timing, timing_table
    from engine.report.export import export_table

    check_model(args.model)
    size = args.size or MODELS[args.model].input_size
    result = run_timing(args.model, size, args.batch, args.classes, args.device, args.steps,
                        args.warmup, args.threads)
    table = timing_table(result)
    paths = export_table(table, reports_dir(args), f"timing-{args.model}-{size}")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print_table(table)
    for p in paths:
        print(p)
    return 0


def register(sub, common) -> None:
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
