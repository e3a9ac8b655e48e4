"""Training throughput against batch size (seed 001, 2.2.4): powers of two from 1 until the
device runs out of memory. An out-of-memory error ends the sweep and is recorded; it never
ends the program."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from engine import tasks
from engine.core import rundir as rd
from engine.core.settings import Settings, input_size
from engine.core.table import INT, RATE, TEXT, Table
from engine.data.datasets import num_classes
from engine.models.zoo import build_model
from engine.report.export import export_table, pyplot, save_figure
from engine.train.step import autocast_for, decide, optimise, pick_device

CPU_CAP = 64


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device: torch.device, warmup: int, steps: int) -> tuple[float, float | None]:
    """Seconds for `steps` calls of step() after `warmup` untimed ones, synchronised at
    both edges, and the peak device memory (MiB) over all of them."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - t0, (torch.cuda.max_memory_allocated(device) / 2**20
                                      if cuda else None)


def measure(model, batch: int, image_size: int, num_classes: int, device: torch.device,
            steps: int, warmup: int, amp: bool, channels_last: bool) -> dict:
    """Images/s of full training steps (forward, backward, SGD step) on random tensors
    already on the device, timed after warm-up."""
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    autocast = autocast_for(device, amp)
    def forward(x, y):
        out = model(x)
        return torch.nn.functional.cross_entropy(out.float(), y), out, y
    dt, peak = timed(lambda: optimise(forward, opt, x, y, autocast), device, warmup, steps)
    return {"batch": batch, "images_per_s": batch * steps / dt, "step_ms": 1000 * dt / steps,
            "peak_mb": peak, "note": ""}


def sweep_batches(make_model, image_size: int, num_classes: int, device: torch.device,
                  max_batch: int, steps: int = 10, warmup: int = 3, amp: bool = False,
                  channels_last: bool = False) -> tuple[list[dict], int | None, str]:
    """Rows for batch 1, 2, 4, ... up to max_batch; stops at the first out-of-memory
    error. Returns (rows, largest batch that fits, why it stopped)."""
    rows, largest, why = [], None, f"reached the cap of {max_batch}"
    batch = 1
    while batch <= max_batch:
        model = make_model().to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        try:
            rows.append(measure(model, batch, image_size, num_classes, device, steps, warmup,
                                amp, channels_last))
            largest = batch
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": batch, "images_per_s": None, "step_ms": None,
                         "peak_mb": None, "note": "out of memory"})
            why = f"out of memory at batch {batch}"
            break
        except ValueError as exc:  # BatchNorm cannot train on one value per channel
            rows.append({"batch": batch, "images_per_s": None, "step_ms": None,
                         "peak_mb": None, "note": str(exc).split("(")[0].strip()[:60]})
        finally:
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()  # leave the next size a clean allocator
        batch *= 2
    return rows, largest, why


def run_throughput(s: Settings, name: str, out_dir: Path, max_batch: int = 0,
                   steps: int = 10, warmup: int = 3) -> tuple[Table, list[Path]]:
    device = pick_device(s.device)
    cuda = device.type == "cuda"
    cap = max_batch or (1 << 20 if cuda else CPU_CAP)
    # a task that trains features is timed with a classifier head of the dataset's size
    outputs = tasks.build(s).outputs(num_classes(s)) or num_classes(s)
    size = input_size(s)
    eff = decide(s, device)
    rows, largest, why = sweep_batches(
        lambda: build_model(s.model, outputs, size, s.activation, s.dropout),
        size, outputs, device, cap, steps, warmup, eff.bf16, eff.channels_last)
    gpu = torch.cuda.get_device_name(device) if cuda else "CPU"
    table = Table(f"Throughput of {s.model} at {size}px on {gpu}",
                  [("Batch", INT), ("images/s", RATE), ("step ms", RATE), ("peak MiB", RATE),
                   ("Note", TEXT)])
    for r in rows:
        table.rows.append([r["batch"], r["images_per_s"], r["step_ms"], r["peak_mb"], r["note"]])
    table.notes.append(f"largest batch that fits: {largest} ({why}); {steps} timed training "
                       f"steps after {warmup} warm-up steps, random tensors on the device")
    stem = f"throughput-{name}"
    paths = export_table(table, out_dir, stem)
    rd.atomic_write_text(Path(out_dir) / f"{stem}.json", json.dumps(
        {"experiment": name, "model": s.model, "image_size": size, "device": gpu,
         "largest_batch": largest, "stopped": why, "rows": rows}, indent=2) + "\n")
    paths.append(Path(out_dir) / f"{stem}.json")
    ok = [r for r in rows if r["images_per_s"]]
    if ok:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["batch"] for r in ok], [r["images_per_s"] for r in ok], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("training images/s")
        ax.set_title(table.title)
        ax.grid(alpha=0.3)
        paths.append(save_figure(fig, Path(out_dir) / f"{stem}.png"))
    return table, paths
