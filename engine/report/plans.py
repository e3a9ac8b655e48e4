"""Tables of sweeps and ablations: one row per point (or configuration, over seeds)."""
from __future__ import annotations

import statistics
from pathlib import Path

from engine.core.config import Config
from engine.core.table import DPCT, INT, PCT, RATE, SECS, TEXT, Table
from engine.report.rows import point_runs


def ablation_table(config: Config, name: str, runs_dir: Path) -> Table:
    ab = config.ablations[name]
    by_point = point_runs(runs_dir, name)
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
    by_point = point_runs(runs_dir, name)
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
