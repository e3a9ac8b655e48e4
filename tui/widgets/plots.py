"""Plotext plots: a run's six live curves, and a comparison's bars or sweep curve."""
from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Grid
from textual_plotext import PlotextPlot

from ..snapshot import CompareData, Series

RUN_PLOTS = (("loss", "loss (train, test)"), ("acc", "accuracy (train, test)"),
             ("steps", "step loss"), ("lr", "learning rate"), ("speed", "images/s"),
             ("mem", "GPU memory peak, MiB"))


def draw_lines(widget: PlotextPlot, lines: list, empty: str = "") -> None:
    """Each (xs, ys, label) as a braille line; with no lines, `empty` as the title."""
    plt = widget.plt
    plt.clear_data()
    for xs, ys, label in lines:
        if xs:
            plt.plot(list(xs), list(ys), label=label or None, marker="braille")
    if empty and not lines:
        plt.title(empty)
    widget.refresh()


class RunPlots(Grid):
    """Loss, accuracy, step loss, learning rate, images/s and GPU memory of one run."""

    def compose(self) -> ComposeResult:
        for pid, _ in RUN_PLOTS:
            yield PlotextPlot(id=f"plot-{pid}")

    def on_mount(self) -> None:
        for pid, title in RUN_PLOTS:
            self.plot(pid).plt.title(title)

    def plot(self, pid: str) -> PlotextPlot:
        return self.query_one(f"#plot-{pid}", PlotextPlot)

    def show(self, s: Series) -> None:
        col = s.column
        self.draw("loss", [(*col("train_loss"), "train"), (*col("test_loss"), "test")])
        self.draw("acc", [(*col("train_acc"), "train"), (*col("test_acc"), "test")])
        self.draw("steps", [(s.step_x, s.step_loss, "")])
        self.draw("lr", [(s.step_x, s.step_lr, "")] if s.step_x else [(*col("lr"), "")])
        self.draw("speed", [(*col("images_per_s"), "")])
        mem = col("gpu_mem_peak_mb")
        self.draw("mem", [(*mem, "")] if mem[0] else [],
                  empty="CPU run: no GPU memory" if s.epochs else "")

    def draw(self, pid: str, lines: list, empty: str = "") -> None:
        draw_lines(self.plot(pid), lines, empty)


def draw_compare(widget: PlotextPlot, data: CompareData) -> None:
    """An ablation's mean accuracies as bars; a sweep with `plot`, accuracy against that
    axis (log scale, one line per base: the few-labels figure); else hidden."""
    widget.display = bool(data.bars) or bool(
        data.curve and any(pts for _, pts in data.curve.lines))
    if not widget.display:
        return
    plt = widget.plt
    plt.clear_data()
    plt.clear_figure()
    if data.bars:
        bars = data.bars[::-1]  # plotext stacks horizontal bars upwards: baseline on top
        plt.bar([b[0] for b in bars], [100 * b[1] for b in bars], orientation="horizontal",
                width=0.3)
        plt.title("mean test accuracy, %")
        plt.xlim(max(0.0, min(100 * b[1] for b in bars) - 5), 100)
    else:
        # log10 by hand: plotext 5.3's xscale("log") breaks the legend for 2-point lines
        axis = data.curve.axis
        lines = [(base, [p for p in pts if p[0] > 0]) for base, pts in data.curve.lines]
        for base, pts in lines:
            if pts:
                plt.plot([math.log10(p[0]) for p in pts], [100 * p[1] for p in pts],
                         label=base, marker="braille")
        xs = sorted({p[0] for _, pts in lines for p in pts})
        plt.xticks([math.log10(x) for x in xs], [f"{x:g}" for x in xs])
        plt.xlabel(axis)
        plt.title(f"test accuracy, % against {axis} (log)")
    widget.refresh()
