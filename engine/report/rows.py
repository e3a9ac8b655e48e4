"""What the tables read of runs: an experiment's latest successful run, a plan's done
point, the measured figure, the time to an accuracy. No torch."""
from __future__ import annotations

from pathlib import Path

from engine import launch
from engine.core import rundir as rd
from engine.core.config import Config, Experiment
from engine.report.declared import latest_at_declared


def measured(exp: Experiment, summary: dict | None) -> float | None:
    if not summary:
        return None
    metric = exp.expect.metric if exp.expect else "test_acc_at_best"
    return summary.get(metric)


def latest_rows(config: Config, comp, runs_dir: Path) -> list[tuple[Experiment, rd.Run | None]]:
    """Each of a comparison's experiments with its latest successful run at the declared
    settings, else its latest successful run (None: none)."""
    return [(config.experiments[n], latest_at_declared(config, runs_dir, n))
            for n in comp.experiments]


def point_runs(runs_dir: Path, plan: str) -> dict[str, list[rd.Run]]:
    """A sweep's or ablation's runs by point, as their executors see them (lost)."""
    return rd.runs_by_point(runs_dir, plan, launch.is_alive)


def done_run(runs: list[rd.Run]) -> rd.Run | None:
    return next((r for r in runs if r.raw_state == "done"), None)


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
