"""What a run writes about itself besides its checkpoints: predictions.csv, the log's
epoch line, the summary, and metrics.jsonl trimmed to what a checkpoint covers on resume."""
from __future__ import annotations

import json
import resource
import statistics
import sys
from pathlib import Path

from engine.core import progress
from engine.core import rundir as rd
from engine.core.settings import Settings
from engine.perf import forecast


def write_predictions(path: Path, preds) -> None:
    """id,label for every example, preds a tensor of class indices in id order."""
    lines = ["id,label"] + [f"{i},{int(p)}" for i, p in enumerate(preds.tolist())]
    rd.atomic_write_text(path, "\n".join(lines) + "\n")


def epoch_line(record: dict) -> list[str]:
    parts = [f"train loss {record['train_loss']:.4f}" + (
        f" acc {record['train_acc']:.4f}" if record["train_acc"] is not None else "")]
    for split in ("val", "test"):
        if record.get(f"{split}_loss") is not None:
            parts.append(f"{split} loss {record[f'{split}_loss']:.4f} "
                         f"acc {record[f'{split}_acc']:.4f}")
    if "knn_acc" in record:
        parts.append(f"k-NN acc {record['knn_acc']:.4f} spread {record['spread']:.3f}")
    mem = f", {record['gpu_mem_peak_mb']:.0f} MiB" if record["gpu_mem_peak_mb"] else ""
    return parts + [f"lr {record['lr']:.4g}", f"{record['images_per_s']:.0f} img/s{mem}",
                    f"{record['epoch_s']:.1f}s"]


def trim_metrics(path: Path, last_epoch: int) -> None:
    """Keep only lines of epochs a checkpoint covers, so that a resumed run records each
    epoch exactly once."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.endswith("\n") and _epoch_of(line) <= last_epoch]
    rd.atomic_write_text(path, "".join(keep))


def _epoch_of(line: str) -> int:
    try:
        return int(json.loads(line).get("epoch", 10**9))
    except (ValueError, AttributeError):
        return 10**9


def summarize(run_dir: Path, s: Settings, task, total, trainable, classes, gpu_name,
              device) -> dict:
    epochs = [m for m in rd.read_jsonl(run_dir / rd.METRICS) if m.get("kind") == "epoch"]
    rates = [m["images_per_s"] for m in epochs if m.get("images_per_s")]
    mems = [m["gpu_mem_peak_mb"] for m in epochs if m.get("gpu_mem_peak_mb") is not None]
    knn = [m for m in epochs if m.get("knn_acc") is not None]
    probes = [m for m in rd.read_jsonl(run_dir / rd.METRICS) if m.get("kind") == "probe"]
    status = rd.read_json(run_dir / rd.STATUS) or {}
    summary = task.summary(epochs)
    if knn:
        at_best = next((m for m in knn if m["epoch"] == summary["best_epoch"]), knn[-1])
        summary.update(knn_acc_at_best=at_best["knn_acc"], final_knn_acc=knn[-1]["knn_acc"],
                       best_knn_acc=max(m["knn_acc"] for m in knn),
                       final_spread=knn[-1]["spread"])
    if probes:
        summary["linear_acc"] = probes[-1]["linear_acc"]
    return {
        "task": s.task, "epochs": len(epochs), **summary, "headline": task.headline,
        "best_means": task.best_means,
        "wall_s": progress.view(status, "running")["elapsed"] or 0.0,
        "train_s": sum(m["epoch_s"] for m in epochs),
        "median_images_per_s": statistics.median(rates) if rates else None,
        "gpu_mem_peak_mb": max(mems) if mems else None,
        "params_total": total, "params_trainable": trainable,
        "classes": list(task.class_names(classes)), "device": device, "gpu": gpu_name,
        "forecast": forecast.summary(run_dir, int(status.get("steps") or 0)),
    }


def rss_peak_mb() -> float:
    """The process's peak resident set size (kilobytes from Linux, bytes from macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def log_interval(total_steps: int, points: int = 50, most: int = 20) -> int:
    """log_every = 0: a step line every N steps, N at most `most` (each line reads the
    loss back from the device) and small enough that a short run's step plots get about
    `points` points."""
    return max(1, min(most, total_steps // points))
