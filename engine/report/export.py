"""Files for write-ups: tables as Markdown and CSV, curves as PNG (matplotlib, no torch)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from engine.core import rundir as rd
from engine.core.table import Table
from engine.report.compare import compare_table, curve, table_runs


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "table"


def export_table(table: Table, out_dir: Path, stem: str | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or slug(table.title)
    paths = [out_dir / f"{stem}.md", out_dir / f"{stem}.csv"]
    table = table.traced()  # each row's run ids and commits: figures trace back to runs
    rd.atomic_write_text(paths[0], table.to_markdown())
    rd.atomic_write_text(paths[1], table.to_csv())
    return paths


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path, title: str = "") -> Path:
    """Write the figure atomically, then close it (pyplot keeps every open figure)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        if title:
            fig.suptitle(title)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
        return path
    finally:
        plt.close(fig)


def plot_runs(runs: list[tuple[str, Path]], path: Path, title: str = "") -> Path:
    """Loss, accuracy and learning rate per epoch; one line per run, train dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    for label, run_dir in runs:
        epochs = [m for m in rd.read_jsonl(Path(run_dir) / rd.METRICS) if m.get("kind") == "epoch"]
        if not epochs:
            continue
        x = [m["epoch"] for m in epochs]
        dot = "." if len(x) < 20 else ""  # a run of one or two epochs still shows
        line = axes[0].plot(x, [m["test_loss"] for m in epochs], dot + "-",
                            label=f"{label} test")[0]
        color = line.get_color()
        for ax, key in ((axes[0], "train_loss"), (axes[1], "test_acc"),
                        (axes[1], "train_acc"), (axes[2], "lr")):
            ax.plot(x, [m[key] for m in epochs], dot + ("--" if "train" in key else "-"),
                    color=color, label=label if key == "lr" else
                    f"{label} {key.split('_')[0]}")
    for ax, name in zip(axes, ("loss", "accuracy", "learning rate")):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return save_figure(fig, path, title)


def plot_curve(axis: str, series: dict, path: Path, title: str = "", ylabel: str = "") -> Path:
    """Accuracy against a swept setting, one line per base, on a log axis (few labels);
    with `ylabel`, any other figure as it comes (the Optimus study's time to target)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    scale = 1 if ylabel else 100
    for base, pts in series.items():
        pts = sorted(pts)
        if pts:
            ax.plot([p[0] for p in pts], [scale * p[1] for p in pts], marker="o", label=base)
    ax.set_xscale("log")
    xs = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(xs, [f"{x:g}" for x in xs])  # the swept values, not powers of ten
    ax.set_xticks([], minor=True)
    ax.set_xlabel(axis)
    ax.set_ylabel(ylabel or "test accuracy, %")
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def plot_ablation(table, path: Path) -> Path:
    """Mean test accuracy per configuration with its spread over seeds, baseline on top."""
    plt = pyplot()
    rows = [r for r in table.rows if r[1] is not None]
    fig, ax = plt.subplots(figsize=(7, 1 + 0.45 * max(1, len(rows))), layout="constrained")
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [100 * r[1] for r in rows], xerr=[100 * (r[2] or 0) for r in rows],
            color=["0.6" if r[0] == "baseline" else "C0" for r in rows], capsize=3)
    ax.set_yticks(y, [r[0] for r in rows])
    lo = min((100 * r[1] for r in rows), default=0)
    ax.set_xlim(max(0, lo - 5), 100)
    ax.set_xlabel("mean test accuracy, % (bars: one standard deviation over seeds)")
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path, table.title)


def export_named(config, name: str, runs_dir: Path, out_dir: Path) -> list[Path]:
    """A comparison, sweep or ablation: its table (Markdown, CSV), the curves of its runs
    on one plot and, for a sweep with `plot`, accuracy against that setting."""

    table = compare_table(config, name, runs_dir)
    paths = export_table(table, out_dir, name)
    runs = table_runs(config, name, runs_dir)
    if runs:
        paths.append(plot_runs(runs, Path(out_dir) / f"{name}-curves.png", table.title))
    if name in config.ablations and any(r[1] is not None for r in table.rows):
        paths.append(plot_ablation(table, Path(out_dir) / f"{name}-bars.png"))
    c = curve(config, name, runs_dir, table)
    if c and any(c[1].values()):
        paths.append(plot_curve(*c, Path(out_dir) / f"{name}-{c[0]}.png", table.title))
    if table.plot and any(table.plot[1].values()):
        axis, series, ylabel = table.plot
        paths.append(plot_curve(axis, series, Path(out_dir) / f"{name}-{axis}.png",
                                table.title, ylabel))
    return paths
