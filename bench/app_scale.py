"""The app and `engine status` with a lab's runs folder, not a demo's: a benchmark, never a
test assertion.

Builds N runs x E epochs x S step records in a temporary folder (K of them running: a
writer process keeps appending to their metrics and status, as training does), then
measures, each in a fresh process:
  - app: seconds from start until its runs table holds every run (headless, 120x40):
    the first start, which finds no runs/.index.json and writes it, and the median of
    --repeat starts after it,
  - app: CPU share while idle, in a real pseudo-terminal at 120x40 (nothing changing
    except the running runs' tails), after 8 s to settle,
  - app: peak memory (RSS), the larger of the two app processes',
  - `python -m engine status` wall time (plain text, piped), without an index and with.

Usage: python bench/app_scale.py [--runs 1000[,10000]] [--epochs 30] [--steps 100]
       [--running 0] [--idle 10] [--keep DIR]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import pty
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core import rundir as rd  # noqa: E402
from engine.core.index import FILE  # noqa: E402
from engine.launch.local import hostname, process_start_time  # noqa: E402

CONFIG = """
[defaults]
dataset = "synthetic"
device = "cpu"
epochs = {epochs}
{experiments}
"""

APP_PROBE = """
import asyncio, os, resource, sys, time
t0 = time.perf_counter()
from tui.app import RotundaApp
async def main():
    app = RotundaApp(sys.argv[1], gpu=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#runs-table")
        while table.row_count < int(sys.argv[2]):
            await pilot.pause(0.02)
        first = time.perf_counter() - t0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await pilot.pause(float(sys.argv[3]))
        idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(first, idle, rss)
asyncio.run(main())
"""

WRITER = """
import json, sys, time, pathlib
dirs = [pathlib.Path(p) for p in sys.argv[1:]]
step = 10_000
while True:
    step += 1
    for d in dirs:
        with open(d / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"kind": "step", "epoch": 31, "step": step, "loss": 1.0,
                                "lr": 0.1}) + "\\n")
        if step % 4 == 0:
            status = json.loads((d / "status.json").read_text())
            status.update(step=status.get("step", 0) + 4, updated=time.time())
            tmp = d / ".status.json.w"
            tmp.write_text(json.dumps(status))
            tmp.replace(d / "status.json")
    time.sleep(0.5)
"""


def build(root: Path, n: int, epochs: int, steps: int, experiments: int = 20) -> list[Path]:
    """N finished runs spread over `experiments` experiments, metrics and all."""
    rng = random.Random(0)
    names = [f"exp{i:02d}" for i in range(experiments)]
    (root / "experiments.toml").write_text(CONFIG.format(epochs=epochs, experiments="".join(
        f"\n[experiment.{e}]\n" for e in names)))
    dirs = []
    t0 = time.time() - 86400
    for i in range(n):
        exp = names[i % experiments]
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(t0 + 60 * i)) + f"-{i:04x}"
        d = root / "runs" / exp / run_id
        (d / "checkpoints").mkdir(parents=True)
        lines, accs = [], []
        for e in range(1, epochs + 1):
            for s in range(steps):
                step = (e - 1) * steps + s + 1
                lines.append(json.dumps({"kind": "step", "epoch": e, "step": step,
                                         "loss": 2.3 * math.exp(-step / 500) + 0.1,
                                         "lr": 0.1 * (1 - step / (epochs * steps))}))
            acc = min(0.95, 0.3 + 0.02 * e + rng.uniform(-0.01, 0.01))
            accs.append(acc)
            lines.append(json.dumps({"kind": "epoch", "epoch": e, "train_loss": 1 / e,
                                     "train_acc": acc, "test_loss": 1.1 / e, "test_acc": acc,
                                     "lr": 0.1, "images_per_s": 5000.0, "gpu_mem_peak_mb": None,
                                     "epoch_s": 10.0}))
        (d / rd.METRICS).write_text("\n".join(lines) + "\n")
        start = t0 + 60 * i
        status = {"state": "done", "experiment": exp, "run_id": run_id, "executor": "local",
                  "host": hostname(), "pid": 1, "epoch": epochs, "epochs": epochs,
                  "started": rd.datetime.fromtimestamp(start).astimezone().isoformat(),
                  "ended": rd.datetime.fromtimestamp(start + 10 * epochs).astimezone().isoformat(),
                  "segment_start": start, "best_acc": max(accs), "images_per_s": 5000.0,
                  "epoch_s": 10.0, "step": 0, "steps": steps, "updated": start + 10 * epochs}
        (d / rd.STATUS).write_text(json.dumps(status))
        (d / rd.SUMMARY).write_text(json.dumps({
            "epochs": epochs, "best_epoch": epochs, "test_acc_at_best": accs[-1],
            "final_test_acc": accs[-1], "best_test_acc": max(accs), "wall_s": 10.0 * epochs,
            "train_s": 9.0 * epochs, "median_images_per_s": 5000.0}))
        dirs.append(d)
    return dirs


def make_running(dirs: list[Path]) -> subprocess.Popen | None:
    """Mark these runs as running under one live writer process that grows their tails."""
    if not dirs:
        return None
    writer = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, dirs)])
    start = process_start_time(writer.pid)
    for d in dirs:
        status = json.loads((d / rd.STATUS).read_text())
        status.update(state="running", pid=writer.pid, pid_start=start, job_id=str(writer.pid),
                      ended=None, eta_s=600.0, updated=time.time())
        (d / rd.STATUS).write_text(json.dumps(status))
    return writer


def in_terminal(root: Path, idle: float, settle: float = 8.0) -> tuple[float, float]:
    """`python -m tui` in a real pseudo-terminal (120x40), as a user runs it: its CPU
    share over `idle` seconds once settled, and its peak RSS (MB), from /proc."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm-256color")
    proc = subprocess.Popen([sys.executable, "-m", "tui", "--no-gpu", "--config",
                             str(root / "experiments.toml")], stdin=slave, stdout=slave,
                            stderr=slave, cwd=root, env=env, start_new_session=True)
    os.close(slave)

    def drain():
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass
    threading.Thread(target=drain, daemon=True).start()

    def cpu() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        time.sleep(settle)
        c0, t0 = cpu(), time.perf_counter()
        time.sleep(idle)
        share = (cpu() - c0) / (time.perf_counter() - t0)
        rss = next(int(line.split()[1]) for line in
                   Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                   if line.startswith("VmHWM")) / 1024
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    return share, rss


def measure(root: Path, n: int, idle: float, repeat: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    (root / "runs" / FILE).unlink(missing_ok=True)  # the first start builds the index

    def status() -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "status", "--runs-dir",
                        str(root / "runs")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                       check=True)
        return time.perf_counter() - t0
    firsts, rss = [], 0.0
    for _ in range(repeat + 1):
        out = subprocess.run([sys.executable, "-c", APP_PROBE, str(root / "experiments.toml"),
                              str(n), "0"], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        firsts.append(float(out[0]))
        rss = max(rss, float(out[2]))
    share, term_rss = in_terminal(root, idle)
    (root / "runs" / FILE).unlink(missing_ok=True)
    status_cold = status()
    status_warm = statistics.median(status() for _ in range(repeat))
    return {"first_screen_cold_s": firsts[0], "first_screen_s": statistics.median(firsts[1:]),
            "idle_cpu_share": share, "peak_rss_mb": max(rss, term_rss),
            "engine_status_cold_s": status_cold, "engine_status_s": status_warm}


ROWS = (("first_screen_cold_s", "app: first screen, runs table filled (no index yet)", "s"),
        ("first_screen_s", "app: first screen, runs table filled", "s"),
        ("idle_cpu_share", "app: CPU share while idle", "%"),
        ("peak_rss_mb", "app: peak memory (RSS)", "MB"),
        ("engine_status_cold_s", "python -m engine status (no index yet)", "s"),
        ("engine_status_s", "python -m engine status", "s"))


def lab(root: Path, n: int, epochs: int, steps: int) -> tuple[float, float]:
    """The lab of n runs in root, built unless it is there already (--keep): (seconds to
    build, MB of runs)."""
    t0 = time.perf_counter()
    if not (root / "experiments.toml").is_file():
        build(root, n, epochs, steps)
    size = sum(f.stat().st_size for f in (root / "runs").rglob("*") if f.is_file())
    return time.perf_counter() - t0, size / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="1000", help="runs in the lab; several, comma-separated "
                   "(1000,10000), are measured one after the other into one table")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--running", type=int, default=0, help="runs kept running (tails growing)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    p.add_argument("--repeat", type=int, default=3, help="first-screen runs (median)")
    p.add_argument("--keep", metavar="DIR", help="build the labs in DIR/N and keep them "
                   "(a lab already there is used as it is)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sizes = [int(v) for v in args.runs.split(",")]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rotunda-scale-"))
    results = []
    try:
        for n in sizes:
            root = base / str(n)
            root.mkdir(parents=True, exist_ok=True)
            built, mb = lab(root, n, args.epochs, args.steps)
            dirs = sorted((root / "runs").glob("*/*"), key=lambda d: d.name)
            writer = make_running(dirs[-args.running:] if args.running else [])
            try:
                results.append({"runs": n, "epochs": args.epochs, "steps_per_epoch": args.steps,
                                "running": args.running, "runs_mb": mb, "build_s": built,
                                **measure(root, n, args.idle, args.repeat)})
            finally:
                if writer is not None:
                    writer.kill()
                    writer.wait()
                    for d in dirs[-args.running:]:  # finished again, for the next use
                        rd.update_status(d, state="done", pid=1)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"runs x {args.epochs} epochs x {args.steps} steps, {args.running} running")
    print("| figure | " + " | ".join(f"{r['runs']:,} runs ({r['runs_mb']:.0f} MB)"
                                    for r in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for key, label, unit in ROWS:
        print(f"| {label} | " + " | ".join(
            f"{r[key] * (100 if unit == '%' else 1):.2f} {unit}" for r in results) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
