"""Commands that make, run and steer runs: list, run, launch, sweep, job, resume, rerun,
status, cancel, tag, note."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine import launch
from engine.cli.common import (
    config_path,
    ended,
    find,
    print_table,
    run_args,
    runs_dir_loose,
    train,
)
from engine.core import rundir as rd
from engine.core.config import ConfigError, load
from engine.core.errors import RunError
from engine.core.settings import suggest
from engine.core.table import PCT, TEXT, Table, fmt
from engine.report.compare import compare_table
from engine.report.overview import busy_text, runs_table
from engine.runs.detached import launch_detached, launch_sweep_detached, resume_detached
from engine.runs.execute import (
    rerun_run,
    reshape,
    resumable,
    resume_run,
    run_experiment,
    run_jobs,
    run_sweep,
)


def cmd_list(args) -> int:
    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    table = Table(f"Experiments in {config.path.name}", [
        ("Group", TEXT), ("Name", TEXT), ("Task", TEXT), ("Model", TEXT), ("Data", TEXT),
        ("Epochs", TEXT), ("Init", TEXT), ("Expected", PCT), ("Latest", TEXT)])
    for group, exps in config.groups().items():
        for e in exps:
            runs = launch.list_runs(runs_dir, e.name)
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
    print_table(table)
    return 0


def cmd_run(args) -> int:
    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    results = run_experiment(config, args.name, args.set or [], runs_dir, args.with_deps,
                             args.run_id, queue=not args.now, echo=not args.quiet,
                             train=train)
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
    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    if config.plan(args.name) is None:
        from engine.core.config import suggest
        names = list(config.sweeps) + list(config.ablations)
        raise ConfigError(f"no sweep or ablation named {args.name!r}{suggest(args.name, names)}"
                          f" (declared: {', '.join(names) or 'none'})", str(config.path))
    if args.detach:
        out = launch_sweep_detached(config, args.name, args.set or [], runs_dir)
        print(f"launched sweep {args.name} in the background (early output: {out})")
        return 0
    results = run_sweep(config, args.name, args.set or [], runs_dir, queue=not args.now,
                        echo=not args.quiet, train=train)
    if not args.quiet:
        print_table(compare_table(config, args.name, runs_dir))
    failed = [label for label, _, state in results if state != "done"]
    if failed:
        print(f"{args.name}: {len(failed)} point(s) did not finish: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_launch(args) -> int:
    config = load(config_path(args.config))
    runs_dir = config.runs_dir(args.runs_dir)
    config.experiment(args.name)
    busy = busy_text(args.name, [(r.state, r.epoch, r.epochs) for r in
                                 launch.list_runs(runs_dir, args.name)])
    if busy and not args.yes:
        if not sys.stdin.isatty():
            raise RunError(f"{busy}; --yes launches another")
        if input(f"{busy}; launch another? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    run_id, out = launch_detached(config, args.name, args.set or [], runs_dir)
    print(f"launched {args.name} as {runs_dir / args.name / run_id} (early output: {out})")
    return 0


def cmd_job(args) -> int:
    """Prepared run directories as a batch job (engine/launch/slurm.py) or a detached
    launch (--stdin: the directories the launcher made, once it has made them) runs
    them: in order, a link that does not finish cancelling those after it."""
    dirs = args.run_dir + (sys.stdin.read().splitlines() if args.stdin else [])
    for run_dir, state in run_jobs([Path(d).resolve() for d in dirs if d],
                                   echo=not args.quiet, train=train):
        if state not in ("done", "queued"):  # queued: stopped for a requeue
            status = rd.read_json(run_dir / rd.STATUS) or {}
            print(f"{run_dir.name}: {state}: {status.get('error') or ''}", file=sys.stderr)
            return 1
    return 0


def cmd_resume(args) -> int:
    """In this process; a run over several machines (nodes > 1, as recorded or asked) is
    resubmitted as a job of the batch executor it ran under."""
    run_dir = find(args, args.run)
    run = resumable(run_dir)
    nodes = args.nodes or rd.read_config(run_dir).get("settings", {}).get("nodes") or 1
    if nodes <= 1:
        return ended(run_dir, resume_run(run_dir, queue=not args.now, echo=not args.quiet,
                                         gpus=args.gpus, nodes=args.nodes, train=train))
    if not hasattr(launch.of(run.status), "submit_run"):
        raise RunError(f"{run.experiment}/{run.run_id} ran under the "
                       f"{run.status.get('executor') or 'local'} executor, which runs on this "
                       "machine only: resume it with --nodes 1")
    reshape(run_dir, args.gpus, args.nodes)
    out = resume_detached(run_dir, run_dir.parent.parent)
    job = (rd.read_json(run_dir / rd.STATUS) or {}).get("job_id")
    print(f"resubmitted {run.experiment}/{run.run_id} over {nodes} nodes as job {job} "
          f"(early output: {out})")
    return 0


def cmd_rerun(args) -> int:
    new, state = rerun_run(find(args, args.run), queue=not args.now, echo=not args.quiet,
                           train=train)
    for line in (new / rd.LOG).read_text(encoding="utf-8").splitlines():
        if " rerun: " in line:
            print("warning: " + line.split(" rerun: ", 1)[1], file=sys.stderr)
    return ended(new, state)


def cmd_status(args) -> int:
    runs_dir = runs_dir_loose(args)
    runs = launch.list_runs(runs_dir, args.experiment)
    if args.experiment and not runs:
        runs = _one_run(args, runs_dir, args.experiment)
    if args.where:
        runs = _where(runs, args.where)
    if not runs:
        print(f"no runs{f' of {args.experiment}' if args.experiment else ''}"
              f"{f' where {args.where}' if args.where else ''} in {runs_dir}")
        return 0
    print_table(runs_table(runs[: args.limit] if args.limit else runs))
    return 0


def _where(runs: list, text: str) -> list:
    """The runs the app's filter language lets through (engine/live/query.py); a key that
    no run has is a typo: one line, exit 2."""
    from engine.live import query
    from engine.live.watcher import run_row
    q = query.parse(text)
    if not runs:
        return []
    rows = [run_row(r, time.time(), rd.read_config(r.path).get("settings", {})
                    if query.needs_settings(q) else None) for r in runs]
    fields = [query.run_fields(r) for r in rows]
    unknown = q.unknown(k for f in fields for k in f)
    if unknown:
        raise ConfigError(f"--where: no run has {', '.join(unknown)}"
                          f"{suggest(unknown[0], {k for f in fields for k in f})}")
    return [run for run, row, f in zip(runs, rows, fields)
            if q.matches(f, query.run_text(row))]


def cmd_tag(args) -> int:
    run_dir = find(args, args.run)
    bad = [e for t in [*args.tags, *args.remove] if (e := rd.tag_error(t))]
    if bad:
        raise ConfigError(bad[0])
    notes = rd.write_notes(run_dir, add=tuple(args.tags), remove=tuple(args.remove)) \
        if args.tags or args.remove else rd.read_notes(run_dir)
    print(f"{run_dir.parent.name}/{run_dir.name}: "
          + (" ".join(f"#{t}" for t in notes.get("tags", [])) or "no tags"))
    return 0


def cmd_note(args) -> int:
    run_dir = find(args, args.run)
    if args.text is None:
        print(rd.read_notes(run_dir).get("note") or "(no note)")
        return 0
    rd.write_notes(run_dir, note=args.text)
    print(f"{run_dir.parent.name}/{run_dir.name}: "
          + ("note saved" if args.text.strip() else "note cleared"))
    return 0


def _one_run(args, runs_dir: Path, name: str) -> list:
    """`status NAME` where NAME has no runs folder: one run by reference, none for an
    experiment declared but not run yet, else the usual one line (did you mean)."""
    path = rd.find_run(runs_dir, name, anywhere=True)
    if path is not None:
        return [launch.load_run(path)]
    known = rd.run_folders(runs_dir)
    cfg = config_path(args.config)
    if cfg.exists():
        try:
            config = load(cfg)
        except ConfigError:
            config = None
        if config and name in [*config.experiments, *config.sweeps, *config.ablations]:
            return []
        known += list(config.experiments) if config else []
    raise ConfigError(f"no experiment or run named {name!r}{suggest(name, known)} "
                      f"(runs folder {runs_dir}; python -m engine list shows the experiments)")


def cmd_cancel(args) -> int:
    print(launch.cancel(find(args, args.run), array=args.array))
    return 0


def register(sub, common) -> None:
    sub.add_parser("list", parents=[common], help="the experiments").set_defaults(fn=cmd_list)
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
    la.add_argument("--yes", action="store_true",
                    help="launch even when the experiment has a run queued or running")
    la.set_defaults(fn=cmd_launch)
    sw = sub.add_parser("sweep", parents=[common],
                        help="run every point of a [sweep.NAME] or [ablation.NAME] (done ones are skipped)")
    run_args(sw)
    sw.add_argument("--detach", action="store_true", help="queue it in the background")
    sw.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(fn=cmd_sweep)
    rs = sub.add_parser("resume", parents=[common], help="continue a killed or cancelled run")
    rs.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    rs.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    rs.add_argument("--quiet", action="store_true")
    rs.add_argument("--gpus", type=int, metavar="N",
                    help="train on N processes from here (1 continues a multi-GPU run alone)")
    rs.add_argument("--nodes", type=int, metavar="N",
                    help="train on N machines from here (a Slurm job; 1: in this process)")
    rs.set_defaults(fn=cmd_resume)
    jb = sub.add_parser("job", parents=[common], help=(
        "run a prepared run directory as its batch job does: its first start, or a resume "
        "after a requeue (the Slurm executor's job script)"))
    jb.add_argument("run_dir", nargs="*")
    jb.add_argument("--stdin", action="store_true",
                    help="and the run directories on stdin, one a line, read to its end")
    jb.add_argument("--quiet", action="store_true")
    jb.set_defaults(fn=cmd_job)
    rr = sub.add_parser("rerun", parents=[common], help=(
        "a new run with exactly a run's recorded settings and seed; warns where the code, "
        "environment or data differ"))
    rr.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    rr.add_argument("--now", action="store_true", help="start at once, ignoring the queue")
    rr.add_argument("--quiet", action="store_true")
    rr.set_defaults(fn=cmd_rerun)
    st = sub.add_parser("status", parents=[common], help="runs and their states")
    st.add_argument("experiment", nargs="?")
    st.add_argument("--limit", type=int, default=0)
    st.add_argument("--where", metavar="FILTER", help=(
        "only runs that match, in the app's filter language: words, #tag, acc>0.9, "
        "lr=0.1, model=resnet*, state!=failed (all must hold)"))
    st.set_defaults(fn=cmd_status)
    tg = sub.add_parser("tag", parents=[common], help=(
        "tag a run (kept in its notes.json; the app shows and filters tags): "
        "tag RUN TAG..., --remove TAG; no tags prints them"))
    tg.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    tg.add_argument("tags", nargs="*")
    tg.add_argument("--remove", "-r", nargs="+", default=[], metavar="TAG")
    tg.set_defaults(fn=cmd_tag)
    nt = sub.add_parser("note", parents=[common], help=(
        "a free-text note on a run (notes.json): note RUN TEXT; \"\" clears it; no text "
        "prints it"))
    nt.add_argument("run", help="run directory, EXPERIMENT/RUN_ID or run id")
    nt.add_argument("text", nargs="?")
    nt.set_defaults(fn=cmd_note)
    ca = sub.add_parser("cancel", parents=[common], help="stop a run (SIGTERM)")
    ca.add_argument("run")
    ca.add_argument("--array", action="store_true",
                    help="cancel every point of the Slurm job array the run is a task of")
    ca.set_defaults(fn=cmd_cancel)
