"""The runs overview: one row per run from its status.json (state, progress, speed,
elapsed, ETA, and a batch system's own word on its job). No torch."""
from __future__ import annotations

from engine import launch
from engine.core import progress
from engine.core import rundir as rd
from engine.core.table import PCT, RATE, SECS, TEXT, Table


def run_progress(run: rd.Run, now: float | None = None) -> dict:
    """What the runs overview shows of one run, from its status.json alone (its summary
    for runs written before status kept progress): best accuracy so far, speed, elapsed,
    a live ETA and the step within the epoch under way."""
    summary = run.summary if "best_acc" not in run.status else None
    return progress.view(run.status, run.state, summary, now)


def job_text(run: rd.Run) -> str | None:
    """A live run's job as its executor sees it (Slurm: "PENDING (Resources)", "RUNNING on
    node01"); None for the local executor and for finished runs."""
    return launch.describe(run.status) if run.raw_state in rd.LIVE_STATES else None


def effective_text(status: dict) -> str | None:
    """What a run trains with, as status.json's "effective" records it (step.decide), and
    each fallback from what was asked: "bf16, channels_last, compiled"."""
    eff = status.get("effective")
    if not isinstance(eff, dict):
        return None
    parts = [str(eff.get("precision")), str(eff.get("memory_format"))]
    parts.append("compiled" if eff.get("compiled") else "eager")
    text = ", ".join(parts)
    fallbacks = eff.get("fallbacks") or []
    return text + "".join(f"; fell back: {f}" for f in fallbacks)


def notes_text(tags, note: str, width: int = 30) -> str:
    """A run's tags and the start of its note in one cell: "#baseline #lr note text…"."""
    text = " ".join([*(f"#{t}" for t in tags), *([note.splitlines()[0]] if note else [])])
    return text if len(text) <= width else text[:width - 1] + "…"


def busy_text(name: str, runs: list[tuple[str, int, int]]) -> str | None:
    """What runs `name` has going, from (state, epoch, epochs) of its runs: "scratch is
    running (ep 2/4)", "scratch has 2 runs going: running (ep 2/4), queued"; None when
    none is queued or running (a second launch then asks nothing)."""
    going = [f"{state} (ep {epoch}/{epochs})" if state == "running" else state
             for state, epoch, epochs in runs if state in ("queued", "running")]
    if not going:
        return None
    if len(going) == 1:
        return f"{name} is {going[0]}"
    return f"{name} has {len(going)} runs going: {', '.join(going)}"


def runs_table(runs: list[rd.Run], now: float | None = None) -> Table:
    table = Table("Runs", [("State", TEXT), ("Experiment", TEXT), ("Run", TEXT),
                           ("Epoch", TEXT), ("Step", TEXT), ("Best acc", PCT),
                           ("img/s", RATE), ("Elapsed", SECS), ("ETA", SECS),
                           ("Tags", TEXT)])
    table.whole = {"Experiment", "Run"}
    for run in runs:
        p = run_progress(run, now)
        step = f"{p['step']}/{p['steps']}" if p["step"] is not None and p["steps"] else None
        state = " ".join(filter(None, (run.state, "collapsed" if run.status.get("collapsed")
                                       else None, job_text(run))))
        table.rows.append([state, run.experiment, run.run_id, f"{run.epoch}/{run.epochs}",
                           p["phase"] or step, p["best_acc"], p["images_per_s"], p["elapsed"],
                           p["eta"], notes_text(run.tags, run.note)])
        if run.raw_state == rd.DAMAGED:
            table.notes.append(f"damaged: {run.experiment}/{run.run_id}: {run.status['error']}")
    if not any(r[-1] for r in table.rows):  # a Tags column only where a run has some
        table.columns.pop()
        for r in table.rows:
            r.pop()
    return table
