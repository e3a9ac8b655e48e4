"""Plotext plots: a run's live curves, and a comparison's bars or sweep curve."""
from __future__ import annotations

import math
import zlib

from textual.app import ComposeResult
from textual.containers import Grid
from textual.events import Resize
from textual_plotext import PlotextPlot

from engine.live.snapshot import CompareData, Series

# Two lines a plot at most, told apart by these colours, named in the titles: plotext's
# legend sits on the top-left corner, over the first (highest) points of a loss curve.
TRAIN, TEST, KNN, FIT = "cyan", "orange", "green", "magenta"
# In order of interest: a small terminal shows the first few, larger.
RUN_PLOTS = (("loss", f"loss, log: train {TRAIN}, test {TEST}"),
             ("acc", f"accuracy %: train {TRAIN}, test {TEST}"),
             ("steps", "step loss, log"), ("lr", "learning rate"), ("speed", "images/s"),
             ("mem", "GPU memory peak, MiB"))
SMALL_H, NARROW_W = 18, 110  # below: one row of plots; two columns
# plotext drops a title wider than its plot: shorter words first, then an ellipsis
SHORTER = (("accuracy", "acc"), ("learning rate", "lr"), ("GPU memory peak", "GPU mem"),
           (" to the last step", ""), ("embedding spread", "spread"), (" (0: collapsed)", ""),
           ("mean test accuracy", "mean acc"), ("test accuracy", "acc"), (": train ", ": "),
           (", test ", "/"), (", k-NN ", "/"), (", fit ", "/"))


def fit_title(title: str, width: int) -> str:
    """`title` within `width` columns, the colours that name the lines kept longest."""
    for long, short in SHORTER:
        if len(title) <= width:
            return title
        title = title.replace(long, short)
    return title if len(title) <= width else title[:max(width - 1, 0)] + "…"


class TitledPlot(PlotextPlot):
    """A plot whose title is fitted to its width each time it is drawn."""

    title = ""

    def set_title(self, title: str) -> None:
        self.title = title
        self.refresh()

    def render(self):
        self.plt.title(fit_title(self.title, self.size.width - 2))
        return super().render()


def log_ticks(lo: float, hi: float, most: int = 4) -> list[float]:
    """Tick values for a log10 axis from lo to hi: powers of ten (every other one, and so
    on, past `most`), with the ends when fewer than two fall inside. Few enough that
    plotext never thins them itself: which ones it kept depended on when the plot was
    first built, so the same data rendered two ways."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [10.0 ** k for k in decades if lo <= 10.0 ** k <= hi]
    ticks = ticks[::-(-len(ticks) // most)] if ticks else ticks
    return ticks if len(ticks) >= 2 else sorted({lo, *ticks, hi})


def positive(xs, ys) -> tuple[tuple, tuple]:
    """The points a log axis can show."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and y > 0]
    return tuple(p[0] for p in pts), tuple(p[1] for p in pts)


def draw_lines(widget: PlotextPlot, lines: list, log: bool = False, empty: str = "") -> None:
    """Each (xs, ys, colour) as a braille line; `log`: y as log10 by hand with ticks
    labelled in real values (plotext's own log axis breaks when a plot is built again),
    so that one huge first-epoch loss does not flatten the rest."""
    plt = widget.plt
    plt.clear_data()
    if log:
        lines = [(*positive(xs, ys), colour) for xs, ys, colour in lines]
    for xs, ys, colour in lines:
        if xs:
            plt.plot(list(xs), [math.log10(y) for y in ys] if log else list(ys),
                     color=colour, marker="braille")
    values = [y for _, ys, _ in lines for y in ys]
    if log and values:
        ticks = log_ticks(min(values), max(values))
        plt.yticks([math.log10(t) for t in ticks], [f"{t:.3g}" for t in ticks])
    if empty and not lines:
        widget.set_title(empty)
    widget.refresh()


class RunPlots(Grid):
    """A run's curves: as many as the room allows, in RUN_PLOTS order."""

    def compose(self) -> ComposeResult:
        for pid, _ in RUN_PLOTS:
            yield TitledPlot(id=f"plot-{pid}")

    def on_mount(self) -> None:
        for pid, title in RUN_PLOTS:
            self.plot(pid).set_title(title)

    def on_resize(self, event: Resize) -> None:
        """Fewer, larger plots when small: one row below SMALL_H rows, two columns below
        NARROW_W columns (80x24 and 100x30: loss and accuracy; 200x50: all six)."""
        rows = 1 if event.size.height < SMALL_H else 2
        cols = 2 if event.size.width < NARROW_W else 3
        self.styles.grid_size_columns, self.styles.grid_size_rows = cols, rows
        for i, (pid, _) in enumerate(RUN_PLOTS):
            self.plot(pid).display = i < rows * cols

    def plot(self, pid: str) -> TitledPlot:
        return self.query_one(f"#plot-{pid}", TitledPlot)

    def show(self, s: Series, fit: tuple = ()) -> None:
        """`fit`: (steps, losses) of the loss model's curve, drawn over the step loss."""
        col = s.column
        pct = [(xs, [100 * v for v in ys])
               for xs, ys in (col("train_acc"), col("test_acc"), col("knn_acc"))]
        self.draw("loss", [(*col("train_loss"), TRAIN), (*col("test_loss"), TEST)], log=True)
        # the k-NN monitor: how good the features are, while a run trains (any task)
        self.draw("acc", [(*pct[0], TRAIN), (*pct[1], TEST), (*pct[2], KNN)],
                  title=dict(RUN_PLOTS)["acc"] + (f", k-NN {KNN}" if pct[2][0] else ""))
        self.draw("steps", [(s.step_x, s.step_loss, TRAIN)] + ([(*fit, FIT)] if fit else []),
                  log=True, title=dict(RUN_PLOTS)["steps"] + (f", fit {FIT} to the last step"
                                                              if fit else ""))
        self.draw("lr", [(s.step_x, s.step_lr, TRAIN)] if s.step_x else [(*col("lr"), TRAIN)])
        self.draw("speed", [(*col("images_per_s"), TRAIN)])
        mem, spread, rss = col("gpu_mem_peak_mb"), col("spread"), col("rss_peak_mb")
        if spread[0] and not mem[0]:  # a CPU run with a collapse watch shows that instead
            self.draw("mem", [(*spread, TRAIN)], title="embedding spread (0: collapsed)")
        elif mem[0]:
            self.draw("mem", [(*mem, TRAIN)], title=dict(RUN_PLOTS)["mem"])
        else:  # a CPU run: the process's memory, and how many cores it kept busy
            cores = col("cpu_cores")[1]
            busy = f", {100 * cores[-1]:.0f}% CPU" if cores else ""
            self.draw("mem", [(*rss, TRAIN)] if rss[0] else [],
                      empty="CPU run: no GPU memory" if s.epochs else "",
                      title=f"RSS peak, MiB{busy}")

    def draw(self, pid: str, lines: list, log: bool = False, empty: str = "",
             title: str | None = None) -> None:
        if title is not None:
            self.plot(pid).set_title(title)
        draw_lines(self.plot(pid), lines, log, empty)


# a run's colour wherever it is drawn: the same run, the same colour, in every comparison
PALETTE = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white",
           "gray", "cyan+", "orange+", "green+")


def run_colour(key: str) -> str:
    """By EXPERIMENT/RUN_ID, not the whole path: a copied or moved run keeps its colour."""
    name = "/".join(key.rstrip("/").split("/")[-2:])
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def draw_compare(widget: TitledPlot, data: CompareData) -> None:
    """An ablation's mean accuracies as bars; a sweep with `plot`, accuracy against that
    axis (log scale, one line per base: the few-labels figure); a curve with its own
    y label (the Optimus study's time to target against workers); else the accuracy of
    every run behind the table, epoch by epoch, overlaid; hidden with nothing to draw."""
    overlay = [r for r in data.runs if r[2]]
    widget.display = bool(data.bars) or bool(
        data.curve and any(pts for _, pts in data.curve.lines)) or bool(overlay)
    if not widget.display:
        return
    plt = widget.plt
    plt.clear_data()
    plt.clear_figure()
    if not data.bars and not (data.curve and any(pts for _, pts in data.curve.lines)):
        for label, key, xs, ys in overlay:
            plt.plot(list(xs), [100 * y for y in ys], label=label, color=run_colour(key),
                     marker="braille")
        plt.xlabel("epoch")
        n = len(overlay)
        widget.set_title(f"accuracy %, per epoch: the table's {n} run{'s' * (n != 1)}")
    elif data.bars:
        bars = data.bars[::-1]  # plotext stacks horizontal bars upwards: baseline on top
        plt.bar([b[0] for b in bars], [100 * b[1] for b in bars], orientation="horizontal",
                width=0.3)
        widget.set_title("mean test accuracy, %")
        plt.xlim(max(0.0, min(100 * b[1] for b in bars) - 5), 100)
    else:
        # log10 by hand: plotext 5.3's xscale("log") breaks the legend for 2-point lines
        axis, ylabel = data.curve.axis, data.curve.ylabel
        scale = 1 if ylabel else 100  # accuracy as %, anything else as it comes
        lines = [(base, [p for p in pts if p[0] > 0]) for base, pts in data.curve.lines]
        for base, pts in lines:
            if pts:
                plt.plot([math.log10(p[0]) for p in pts], [scale * p[1] for p in pts],
                         label=base, marker="braille")
        xs = sorted({p[0] for _, pts in lines for p in pts})
        plt.xticks([math.log10(x) for x in xs], [f"{x:g}" for x in xs])
        plt.xlabel(axis)
        widget.set_title(f"{ylabel or 'test accuracy, %'} against {axis} (log)")
    widget.refresh()
