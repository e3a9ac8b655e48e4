"""Tables from run directories: the comparisons a report needs, and the runs overview.

Pure Python over the run directory format (no torch): the CLI and the app render the
same Table objects, and export them as Markdown or CSV.
"""
from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from . import progress
from . import rundir as rd
from .config import Config, ConfigError, Experiment
from .settings import suggest

# Column formats: how a raw cell value is shown (CSV keeps the raw value).
PCT, DPCT, INT, SECS, RATE, TEXT = "pct", "dpct", "int", "secs", "rate", "text"
METRIC_NAMES = {"test_acc_at_best": "acc@best", "final_test_acc": "final acc",
                "best_test_acc": "best acc"}


@dataclass
class Table:
    title: str
    columns: list  # [(name, format)]
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    whole: set = field(default_factory=set)  # columns never cut: names and ids to paste
    # a curve that is not accuracy: (x axis, {line: [(x, y), ...]}, y label)
    plot: tuple | None = None
    runs: list = field(default_factory=list)  # per row, the run directories behind it

    def traced(self) -> "Table":
        """A copy with each row's run ids and code commits, for exports: a figure in a
        report traces back to its runs."""
        from .provenance import PROVENANCE, describe_code

        if len(self.runs) != len(self.rows):
            return self
        extra = []
        for paths in self.runs:
            prov = [rd.read_json(Path(p) / PROVENANCE) or {} for p in paths]
            extra.append([" ".join(Path(p).name for p in paths) or None,
                          " ".join(dict.fromkeys(describe_code(x.get("code") or {})
                                                 for x in prov)) or None])
        return Table(self.title, self.columns + [("Run id", TEXT), ("Commit", TEXT)],
                     [row + more for row, more in zip(self.rows, extra)], self.notes,
                     self.whole, self.runs)

    def formatted(self) -> list[list[str]]:
        return [[fmt(v, f) for v, (_, f) in zip(row, self.columns)] for row in self.rows]

    def to_markdown(self) -> str:
        head = [n for n, _ in self.columns]
        align = ["---" if f == TEXT else "---:" for _, f in self.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(head) + " |",
                 "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in self.formatted()]
        lines += [""] + [f"_{n}_" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([n for n, _ in self.columns])
        for row in self.rows:
            w.writerow(["" if v is None else (round(v, 6) if isinstance(v, float) else v)
                        for v in row])
        return buf.getvalue()

    def to_text(self) -> str:
        """Plain aligned columns with nothing cut, for pipes and files."""
        cells = [[n for n, _ in self.columns]] + self.formatted()
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = [self.title] + ["  ".join(c.ljust(w) if f == TEXT else c.rjust(w)
                                          for c, w, (_, f) in zip(row, widths, self.columns))
                                .rstrip() for row in cells]
        return "\n".join(lines + self.notes) + "\n"

    def to_rich(self):
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, title_justify="left", caption="\n".join(self.notes),
                      caption_justify="left")
        rows = self.formatted()
        for i, (name, f) in enumerate(self.columns):
            whole = max([len(name)] + [len(r[i]) for r in rows]) if name in self.whole else None
            t.add_column(name, justify="left" if f == TEXT else "right",
                         no_wrap=whole is not None, min_width=whole)
        for row in rows:
            t.add_row(*row)
        return t


def fmt(v, f: str) -> str:
    if v is None or v == "":
        return "-"
    if f == PCT:
        return f"{100 * v:.2f}%"
    if f == DPCT:
        return f"{100 * v:+.2f}"
    if f == INT:
        return f"{int(v):,}"
    if f == SECS:
        return duration(v)
    if f == RATE:
        return f"{v:,.0f}"
    return str(v)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def measured(exp: Experiment, summary: dict | None) -> float | None:
    if not summary:
        return None
    metric = exp.expect.metric if exp.expect else "test_acc_at_best"
    return summary.get(metric)


def table_names(config: Config) -> list[str]:
    """Everything `compare` can show: [compare.*] tables, sweeps, ablations."""
    return list(config.compares) + list(config.sweeps) + list(config.ablations)


def table_runs(config: Config, name: str, runs_dir: Path) -> list[tuple[str, Path]]:
    """(label, run directory) of the runs behind a table, for its curves."""
    if config.plan(name) is not None:
        out = []
        for label, runs in rd.runs_by_point(runs_dir, name).items():
            done = [r for r in runs if r.raw_state == "done"]
            if done and (name in config.sweeps or label.endswith(" seed=0")):
                out.append((label.replace(" seed=0", ""), done[0].path))
        order = {label: i for i, (label, _, _) in enumerate(config.plan(name).points())}
        return sorted(out, key=lambda t: order.get(t[0], order.get(t[0] + " seed=0", 0)))
    comp = config.compares[name]
    return [(e, r.path) for e in comp.experiments if (r := rd.latest_done(runs_dir, e))] + [
        (f"{sweep} {label}", path) for sweep in comp.sweeps
        for label, path in table_runs(config, sweep, runs_dir)]


def curve(config: Config, name: str, runs_dir: Path,
          table: Table | None = None) -> tuple[str, dict] | None:
    """For a sweep with `plot`: (axis, {base: [(x, acc@best), ...]}) from its done points;
    `table`, its sweep_table when the caller already has it (saves reading every run again)."""
    sweep = config.sweeps.get(name)
    if sweep is None or not sweep.plot:
        return None
    table = table or sweep_table(config, name, runs_dir)
    series: dict[str, list] = {b: [] for b in sweep.bases}
    for (label, base, overrides), row in zip(sweep.points(), table.rows):
        x = next(float(o.split("=", 1)[1]) for o in overrides if o.startswith(sweep.plot + "="))
        if row[1] is not None:
            series[base].append((x, row[1]))
    return sweep.plot, series


def ablation_table(config: Config, name: str, runs_dir: Path) -> Table:
    ab = config.ablations[name]
    by_point = rd.runs_by_point(runs_dir, name)
    stats, table_runs_ = [], []
    for label, _ in ab.configs():
        accs, walls, paths = [], [], []
        for seed in range(ab.seeds):
            done = [r for r in by_point.get(f"{label} seed={seed}", []) if r.raw_state == "done"]
            if done and done[0].summary:
                accs.append(done[0].summary["test_acc_at_best"])
                walls.append(done[0].summary["wall_s"])
                paths.append(done[0].path)
        table_runs_.append(paths)
        mean = statistics.fmean(accs) if accs else None
        spread = statistics.stdev(accs) if len(accs) > 1 else None
        stats.append((label, mean, spread, len(accs), statistics.fmean(walls) if walls else None))
    base_mean = next((m for label, m, *_ in stats if label == "baseline"), None)
    table = Table(ab.title, [("Configuration", TEXT), ("Mean acc", PCT), ("Std", PCT),
                             ("Delta", DPCT), ("Seeds", TEXT), ("Wall", SECS),
                             ("Components", TEXT)])
    table.runs = table_runs_
    parts = dict(ab.components)
    for label, mean, spread, n, wall in stats:
        chosen = ([] if label == "baseline" else list(parts) if label == "full" else
                  [c for c in parts if c != label[5:]] if label.startswith("full-") else
                  label[1:].split("+"))
        table.rows.append([label, mean, spread,
                           mean - base_mean if mean is not None and base_mean is not None
                           else None, f"{n}/{ab.seeds}", wall,
                           "; ".join(" ".join(parts[c]) for c in chosen) or "-"])
    table.notes.append(f"Ablation of {ab.base} ({ab.mode.replace('_', '-')}): test accuracy "
                       "at the epoch of lowest test loss, mean and standard deviation over "
                       "seeds; delta against the baseline's mean, in points.")
    return table


def sweep_table(config: Config, name: str, runs_dir: Path) -> Table:
    sweep = config.sweeps[name]
    by_point = rd.runs_by_point(runs_dir, name)
    table = Table(sweep.title, [("Point", TEXT), ("Acc@best", PCT), ("Final acc", PCT),
                                ("Best ep.", INT), ("Epochs", INT), ("Train time", SECS),
                                ("img/s", RATE), ("GPU MiB", RATE), ("State", TEXT),
                                ("Run", TEXT)])
    for label, _, _ in sweep.points():
        runs = by_point.get(label, [])
        run = next((r for r in runs if r.raw_state == "done"), runs[0] if runs else None)
        s = (run.summary if run else None) or {}
        table.rows.append([label, s.get("test_acc_at_best"), s.get("final_test_acc"),
                           s.get("best_epoch"), s.get("epochs"), s.get("train_s"),
                           s.get("median_images_per_s"), s.get("gpu_mem_peak_mb"),
                           run.state if run else "not run", run.run_id if run else "-"])
        table.runs.append([run.path] if run else [])
    accs = [r[1] for r in table.rows if r[1] is not None]
    if [k for k, _ in sweep.axes] == ["seed"] and accs:
        spread = f" ± {100 * statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        mean = statistics.fmean(accs)
        table.notes.append(f"Over {len(accs)} seed(s): acc@best mean {100 * mean:.2f}%{spread}"
                           f" (min {100 * min(accs):.2f}%, max {100 * max(accs):.2f}%).")
    table.notes.append(f"Sweep of {sweep.base} over "
                       + ", ".join(k for k, _ in sweep.axes)
                       + "; latest successful run of each point. Train time: training "
                         "epochs only.")
    return table


def compare_table(config: Config, name: str, runs_dir: Path) -> Table:
    """Any table `compare` can show: a [compare.NAME] of one of COMPARE_KINDS, a sweep or an
    ablation; each experiment's row is its latest successful run."""
    return with_differs(_compare_table(config, name, runs_dir))


def with_differs(table: Table) -> Table:
    """A "Differs in" column: the settings that vary among the runs behind the table,
    with each row's values, so that a sweep or ablation table explains itself."""
    from .rundiff import differs_cell, varying

    if len(table.runs) != len(table.rows):
        return table
    keys = varying([p for paths in table.runs for p in paths])
    if not keys:
        return table
    table.columns = table.columns + [("Differs in", TEXT)]
    for row, paths in zip(table.rows, table.runs):
        within = varying(paths)  # an ablation row's seeds
        cell = differs_cell(paths[0], [k for k in keys if k not in within]) if paths else "-"
        row.append(cell + (f" ({', '.join(within)} varies)" if within else ""))
    return table


def _compare_table(config: Config, name: str, runs_dir: Path) -> Table:
    if name in config.sweeps:
        return sweep_table(config, name, runs_dir)
    if name in config.ablations:
        return ablation_table(config, name, runs_dir)
    if name not in config.compares:
        names = table_names(config)
        raise ConfigError(f"no comparison or sweep named {name!r}{suggest(name, names)}"
                          f" (declared: {', '.join(names) or 'none'})", str(config.path))
    comp = config.compares[name]
    rows = [(config.experiments[n], rd.latest_done(runs_dir, n)) for n in comp.experiments]
    if comp.kind == "ssl":
        return _ssl_table(config, comp, rows, runs_dir)
    if comp.kind == "transfer":
        return _transfer_table(config, comp, rows, runs_dir)
    if comp.kind in ("forecast", "optimus"):
        from . import optimus  # scipy, loaded only for these
        return (optimus.forecast_table if comp.kind == "forecast" else
                optimus.compare_study)(config, comp, runs_dir)
    return _KINDS[comp.kind](comp.title, rows)


def _ssl_table(config: Config, comp, rows: list, runs_dir: Path) -> Table:
    """Self-supervised methods side by side: pretraining (epochs, wall time, images/s),
    the k-NN monitor and the linear probe on its features, fine-tuning with few labels
    (the points of the `finetune` sweep whose base starts from the method), and the
    published reference."""
    fractions, tuned = _finetunes(config, comp.finetune, runs_dir)
    table = Table(comp.title, [("Method", TEXT), ("Task", TEXT), ("Epochs", INT),
                               ("Wall", SECS), ("img/s", RATE), ("k-NN", PCT),
                               ("Linear", PCT)]
                  + [(f"{100 * f:g}% labels", PCT) for f in fractions]
                  + [("Reference", PCT), ("Run", TEXT)])
    for e, run in rows:
        s = (run.summary if run else None) or {}
        table.runs.append([run.path] if run else [])
        table.rows.append([e.name, e.settings.task, s.get("epochs"), s.get("wall_s"),
                           s.get("median_images_per_s"), s.get("best_knn_acc"),
                           s.get("linear_acc")]
                          + [tuned.get((e.name, f)) for f in fractions]
                          + [e.reference.value if e.reference else None,
                             run.run_id if run else "no successful run"])
    sources = sorted({e.reference.source for e, _ in rows if e.reference})
    table.notes.append("k-NN: best weighted k-NN test accuracy on the backbone's features "
                       "during pretraining; Linear: a linear probe on its frozen features; "
                       "N% labels: fine-tuned from it with that share of the train labels "
                       "(test accuracy at the epoch of lowest test loss).")
    if sources:
        table.notes.append("Reference: " + "; ".join(sources) + ".")
    return table


def approach(s, model_head: str) -> str:
    """What a transfer run trains: the new head only, every layer, or some."""
    if "all" in s.train_layers:
        return "fine-tune"
    if tuple(s.train_layers) == (model_head,):
        return "feature extractor"
    return "partial: " + ",".join(s.train_layers)


def _transfer_table(config: Config, comp, rows: list, runs_dir: Path) -> Table:
    """Feature extractor against fine-tune, each at its learning rates: the experiments'
    latest runs and the done points of the named sweeps, with the winner picked by
    validation accuracy (test accuracy where a run holds out no validation split)."""
    from .registry import MODELS
    from .settings import apply_overrides

    entries = [(e.name, e, e.settings, run) for e, run in rows]
    for name in comp.sweeps:
        by_point = rd.runs_by_point(runs_dir, name)
        for label, base, overrides in config.sweeps[name].points():
            run = next((r for r in by_point.get(label, []) if r.raw_state == "done"), None)
            entries.append((f"{name} {label}", config.experiments[base],
                            apply_overrides(config.experiments[base].settings, overrides), run))
    table = Table(comp.title, [("Approach", TEXT), ("Run of", TEXT), ("lr", TEXT),
                               ("Val acc", PCT), ("Test acc", PCT), ("Best test", PCT),
                               ("Epochs", INT), ("Wall", SECS), ("img/s", RATE),
                               ("Seed", PCT), ("Seed wall", SECS), ("Run", TEXT)])
    scored = []
    for label, e, s, run in entries:
        summ = (run.summary if run else None) or {}
        ref = e.reference
        row = [approach(s, MODELS[s.model].head), label, f"{s.lr:g}",
               summ.get("val_acc_at_best"), summ.get("test_acc_at_best"),
               summ.get("best_test_acc"), summ.get("epochs"), summ.get("wall_s"),
               summ.get("median_images_per_s"), ref.value if ref else None,
               ref.wall_s if ref else None, run.run_id if run else "no successful run"]
        table.rows.append(row)
        table.runs.append([run.path] if run else [])
        if summ:
            scored.append(row)
    by_val = [r for r in scored if r[3] is not None]
    pick, metric = (by_val, 3) if by_val else (scored, 4)
    if pick:
        best = max(pick, key=lambda r: r[metric])
        table.notes.append(
            f"Winner: {best[0]} at lr {best[2]} ({best[1]}): "
            + (f"validation {fmt(best[3], PCT)}, " if best[3] is not None else "")
            + f"test {fmt(best[4], PCT)}; picked by "
            + ("validation accuracy (the test set reports, it does not choose)." if by_val
               else "test accuracy (no run held out a validation split)."))
    table.notes.append("Val acc and Test acc: at the epoch of lowest validation loss (test "
                       "loss without a validation split); Best test: the highest test "
                       "accuracy of any epoch, as the seed reports it. Seed: the published "
                       "figure and its wall time.")
    sources = sorted({e.reference.source for _, e, _, _ in entries if e.reference})
    if sources:
        table.notes.append("Seed: " + "; ".join(sources) + ".")
    return table


def _finetunes(config: Config, sweep_name: str, runs_dir: Path):
    """(label fractions in the sweep, {(method, fraction): test acc}) of its done points."""
    sweep = config.sweeps.get(sweep_name)
    if sweep is None:
        return [], {}
    by_point = rd.runs_by_point(runs_dir, sweep_name)
    fractions, tuned = [], {}
    for label, base, overrides in sweep.points():
        s = config.experiments[base].settings
        frac = next((float(o.split("=", 1)[1]) for o in overrides
                     if o.startswith("label_fraction=")), s.label_fraction)
        if frac not in fractions:
            fractions.append(frac)
        done = next((r for r in by_point.get(label, []) if r.raw_state == "done"), None)
        if done and done.summary and config.experiments[base].needs:
            tuned[(config.experiments[base].needs, frac)] = done.summary["test_acc_at_best"]
    return sorted(fractions), tuned


def _summary_table(title: str, rows: list) -> Table:
    table = Table(title, [("Experiment", TEXT), ("Metric", TEXT), ("Expected", PCT),
                          ("Measured", PCT), ("Delta", DPCT), ("Epochs", INT),
                          ("To expected", SECS), ("Wall", SECS), ("Run", TEXT), ("Title", TEXT)])
    for e, run in rows:
        s = run.summary if run else None
        got = measured(e, s)
        table.runs.append([run.path] if run else [])
        want = e.expect.value if e.expect else None
        table.rows.append([
            e.name, METRIC_NAMES[e.expect.metric if e.expect else "test_acc_at_best"], want,
            got, got - want if got is not None and want is not None else None,
            s.get("epochs") if s else None,
            time_to(run.path, want) if run and want is not None else None,
            s.get("wall_s") if s else None,
            run.run_id if run else "no successful run", e.title])
    table.notes.append("Measured: the latest successful run of each experiment. "
                       "acc@best: test accuracy at the epoch of lowest test loss. "
                       "To expected: training and evaluation time until the test "
                       "accuracy first reached the expected figure.")
    return table


def _models_table(title: str, rows: list) -> Table:
    table = Table(title, [("Experiment", TEXT), ("Model", TEXT), ("Params", INT),
                          ("Trainable", INT), ("Batch", INT), ("GPU MiB", RATE),
                          ("Epoch time", SECS), ("Acc@best", PCT), ("img/s", RATE)])
    for e, run in rows:
        s = (run.summary if run else None) or {}
        epochs = s.get("epochs") or 0
        table.runs.append([run.path] if run else [])
        table.rows.append([e.name, e.settings.model, s.get("params_total"),
                           s.get("params_trainable"), e.settings.batch_size,
                           s.get("gpu_mem_peak_mb"), s["train_s"] / epochs if epochs else None,
                           s.get("test_acc_at_best"), s.get("median_images_per_s")])
    table.notes.append("GPU MiB: the training process's peak allocated memory at that "
                       "batch size (empty on CPU); latest successful run of each.")
    return table


def _side_table(title: str, rows: list) -> Table:
    table = Table(title, [
        ("Experiment", TEXT), ("Init", TEXT), ("Trains", TEXT), ("Acc@best", PCT),
        ("Final acc", PCT), ("Best ep.", INT), ("Epochs", INT), ("Trainable", INT),
        ("Wall", SECS), ("img/s", RATE), ("Title", TEXT)])
    for e, run in rows:
        s = (run.summary if run else None) or {}
        table.runs.append([run.path] if run else [])
        table.rows.append([
            e.name, str(e.settings.init or "random"), ",".join(e.settings.train_layers),
            s.get("test_acc_at_best"), s.get("final_test_acc"), s.get("best_epoch"),
            s.get("epochs"), s.get("params_trainable"), s.get("wall_s"),
            s.get("median_images_per_s"), e.title])
    table.notes.append("Acc@best: test accuracy at the epoch of lowest test loss; "
                       "latest successful run of each experiment.")
    return table


_KINDS = {"summary": _summary_table, "models": _models_table, "table": _side_table}


def time_to(run_dir: Path, accuracy: float) -> float | None:
    """Seconds of epochs (training and evaluation, not start-up) until the test accuracy
    first reached `accuracy`; None if it never did."""
    spent = 0.0
    for m in rd.read_jsonl(run_dir / rd.METRICS):
        if m.get("kind") == "epoch":
            spent += m.get("epoch_s") or 0.0
            if (m.get("test_acc") or 0.0) >= accuracy:
                return spent
    return None


def run_progress(run: rd.Run, now: float | None = None) -> dict:
    """What the runs overview shows of one run, from its status.json alone (its summary
    for runs written before status kept progress): best accuracy so far, speed, elapsed,
    a live ETA and the step within the epoch under way."""
    summary = run.summary if "best_acc" not in run.status else None
    return progress.view(run.status, run.state, summary, now)


def job_text(run: rd.Run) -> str | None:
    """A live run's job as its executor sees it (Slurm: "PENDING (Resources)", "RUNNING on
    node01"); None for the local executor and for finished runs."""
    from .launch import describe
    return describe(run.status) if run.raw_state in rd.LIVE_STATES else None


def runs_table(runs: list[rd.Run], now: float | None = None) -> Table:
    table = Table("Runs", [("State", TEXT), ("Experiment", TEXT), ("Run", TEXT),
                           ("Epoch", TEXT), ("Step", TEXT), ("Best acc", PCT),
                           ("img/s", RATE), ("Elapsed", SECS), ("ETA", SECS)])
    table.whole = {"Experiment", "Run"}
    for run in runs:
        p = run_progress(run, now)
        step = f"{p['step']}/{p['steps']}" if p["step"] is not None and p["steps"] else None
        state = " ".join(filter(None, (run.state, "collapsed" if run.status.get("collapsed")
                                       else None, job_text(run))))
        table.rows.append([state, run.experiment, run.run_id, f"{run.epoch}/{run.epochs}",
                           step, p["best_acc"], p["images_per_s"], p["elapsed"], p["eta"]])
        if run.raw_state == rd.DAMAGED:
            table.notes.append(f"damaged: {run.experiment}/{run.run_id}: {run.status['error']}")
    return table
