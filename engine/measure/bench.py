"""python -m engine bench: training images/s and peak memory of the engine's data path
against a conventional pipeline (torchvision dataset, PIL transforms, DataLoader with
workers, fp32) and against the model alone on tensors already on the device, all in one
process on the same model and device. The ratios are the point: engine / model alone is
what the data path costs, engine / conventional is what it saves."""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch

from engine import tasks
from engine.core import rundir as rd
from engine.core.config import Settings
from engine.core.registry import TASKS
from engine.core.table import RATE, TEXT, Table
from engine.data.datasets import load_dataset
from engine.data.sources import cifar_batches_dir
from engine.data.splits import TensorSplit
from engine.measure.throughput import sync, timed
from engine.models.weights import normalizer
from engine.report.export import export_table
from engine.train.optim import Ema
from engine.train.step import (
    Stepper,
    autocast_for,
    decide,
    optimise,
    pick_device,
    prepare_batch,
    trainable_model,
)

MODES = ("model", "engine", "data", "conventional")
LABELS = {"model": "model alone", "engine": "engine", "data": "engine data only",
          "conventional": "conventional"}
EXPLAIN = ("model alone: random tensors made once on the device; engine: device-resident uint8 "
           "splits, batched crop/flip/rotation, bf16 and channels_last as configured; engine "
           "data only: the same batches without the model; conventional: torchvision dataset, "
           "PIL transforms, DataLoader with workers, fp32")


def _model(s: Settings, task, num_classes: int, device, fast: bool):
    """The model and optimiser as train.py builds them; `fast` keeps channels_last as
    decided, else a plain fp32 contiguous model (the conventional path)."""
    torch.manual_seed(s.seed)
    if not fast:
        s = dataclasses.replace(s, channels_last=False)
    return trainable_model(s, task, num_classes, device)


def _cycle(make_iter):
    while True:
        yield from make_iter()


class _ArrayImages(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 does per item: a uint8 array to a PIL image, then the
    transform. Used for data that has no torchvision dataset class (the synthetic set)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x, self.y, self.transform = x.permute(0, 2, 3, 1).numpy(), y.tolist(), transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def conventional_dataset(s: Settings, data, mean, std):
    """The torchvision dataset a tutorial would use for this data, with PIL transforms
    equivalent to the engine's augmentation. Returns (dataset, description)."""
    from torchvision import datasets
    from torchvision import transforms as T

    steps = []
    if s.dataset == "imagefolder":
        steps.append(T.Resize((s.image_size, s.image_size)))
    if s.augment == "crop_flip":
        steps.append(T.RandomCrop(s.image_size, padding=4))
    if s.augment != "none":
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    tf = T.Compose(steps)
    root = Path(s.data_dir)
    if s.dataset == "cifar10" and cifar_batches_dir(root) is not None and s.image_size == 32:
        try:
            return (datasets.CIFAR10(str(cifar_batches_dir(root).parent), train=True,
                                     download=False, transform=tf), "torchvision CIFAR10")
        except RuntimeError:  # its checksums reject files that are not the release's own
            pass
    if s.dataset in ("cifar10", "imagefolder") and (root / "train").is_dir():
        return (datasets.ImageFolder(str(root / "train"), transform=tf),
                "ImageFolder (decode per image)")
    if isinstance(data.train, TensorSplit):
        return _ArrayImages(data.train.x, data.train.y, tf), "uint8 array -> PIL per image"
    return None, "no torchvision dataset for this data"


class _Bench:
    """One experiment's settings timed along the four paths, one after another, each on a
    fresh model, freeing device memory between them."""

    def __init__(self, s: Settings, steps: int, warmup: int):
        self.s, self.steps, self.warmup = s, steps, warmup
        self.device = pick_device(s.device)
        self.cuda = self.device.type == "cuda"
        self.effective = decide(s, self.device)
        self.data = load_dataset(s).place(self.device, s.data_placement)
        self.task = tasks.build(s)
        self.classes = len(self.data.classes)
        self.per_step = self.task.images_per_step(s.batch_size)
        self.autocast = autocast_for(self.device, self.effective.bf16)
        self.norm, _ = normalizer(s, self.data, self.device,
                                  self.effective.channels_last)
        self.gen = torch.Generator(device=self.device).manual_seed(s.seed)
        self.rows: dict[str, dict] = {}

    def time(self, mode: str, step, note: str = "") -> None:
        dt, peak = timed(step, self.device, self.warmup, self.steps)
        self.rows[mode] = {"mode": mode, "label": LABELS[mode],
                           "images_per_s": self.per_step * self.steps / dt,
                           "step_ms": 1000 * dt / self.steps, "peak_mb": peak, "note": note}
        if self.cuda:
            torch.cuda.empty_cache()  # the next path starts from a clean allocator

    def _forward(self, model):
        return lambda x, y: self.task.forward(model, x, y)

    def _after_backward(self, model):
        return lambda: self.task.after_backward(model)

    def _stepper(self, model):
        """The run's step, compile fallback included: a compile failure is recorded in the
        result, not the end of the bench."""
        def fell_back(line):
            self.effective = self.effective.fell_back(line, compiled=False)
        return Stepper(model, self.task, self.effective.compiled, lambda line: None, fell_back)

    def model_alone(self) -> None:
        """The same training step on one batch prepared once, already normalised: the
        ceiling. The task makes the batch, so it has the shapes its forward expects
        (four rotations, two views, nine tiles)."""
        s, device = self.s, self.device
        model, opt = _model(s, self.task, self.classes, device, fast=True)
        xb, yb = next(self.data.train.batches(s.batch_size, device, seed=s.seed,
                                              drop_last=True))
        x, y = prepare_batch(xb, yb, s, self.task, self.gen)
        x = self.norm(x)
        step = self._stepper(model)
        self.time("model", lambda: step(opt, x, y, self.autocast))

    def engine(self, profile_dir: Path | None, name: str) -> None:
        """What train.py does per step; then the same batches without the model."""
        s, task = self.s, self.task
        model, opt = _model(s, task, self.classes, self.device, fast=True)
        batches = _cycle(lambda: self.data.train.batches(s.batch_size, self.device,
                                                         seed=s.seed, drop_last=True))
        ema = Ema(model, s.ema) if s.ema else None
        count = itertools.count()
        step = self._stepper(model)

        def engine_step():
            x, y = prepare_batch(*next(batches), s, task, self.gen)
            step(opt, self.norm(x), y, self.autocast)
            if ema is not None:
                ema.update(model, next(count))

        self.time("engine", engine_step)
        if profile_dir is not None:
            profile(engine_step, self.device, min(self.steps, 20), profile_dir, name)
        model = opt = ema = None  # free the device memory before the data-only path
        self.time("data", lambda: self.norm(prepare_batch(*next(batches), s, task,
                                                          self.gen)[0]))

    def conventional(self, workers: int) -> None:
        """The pipeline a tutorial writes: torchvision dataset, PIL transforms, DataLoader
        workers, fp32, contiguous."""
        s, device, task = self.s, self.device, self.task
        ds, how = conventional_dataset(s, self.data, self.data.mean, self.data.std)
        if TASKS[s.task].trains_features:  # its views are made on the device, by kornia
            ds, how = None, "none for a two-view method (the engine path is what it has)"
        if ds is None:
            self.rows["conventional"] = {"mode": "conventional", "label": LABELS["conventional"],
                                         "images_per_s": None, "step_ms": None,
                                         "peak_mb": None, "note": how}
            return
        model, opt = _model(s, task, self.classes, device, fast=False)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=s.batch_size, shuffle=True, num_workers=workers, drop_last=True,
            pin_memory=self.cuda, persistent_workers=workers > 0)
        it = _cycle(lambda: iter(loader))

        def conventional_step():
            xb, yb = next(it)
            x, y = task.train_views(xb.to(device, non_blocking=True),
                                    yb.to(device, non_blocking=True), self.gen)
            optimise(self._forward(model), opt, x, y, nullcontext(),
                     self._after_backward(model))

        self.time("conventional", conventional_step, note=f"{workers} workers; {how}")

    def result(self) -> dict:
        s, rows = self.s, self.rows
        model_rate, conv_rate = rows["model"]["images_per_s"], rows["conventional"]["images_per_s"]
        for r in rows.values():
            rate = r["images_per_s"] if r["mode"] != "data" else None
            r["vs_model"] = rate / model_rate if rate else None
            r["vs_conventional"] = rate / conv_rate if rate and conv_rate else None
        return {
            "settings": {**{k: getattr(s, k) for k in (
                "task", "rotation_mode", "dataset", "model", "image_size", "batch_size",
                "compile", "augment", "cutout")}, "bf16": self.effective.bf16,
                "channels_last": self.effective.channels_last},
            "effective": self.effective.record(), "device": str(self.device),
            "images_per_step": self.per_step, "train_images": len(self.data.train),
            "data": self.data.source, "rows": [rows[m] for m in MODES],
        }


def bench_one(s: Settings, steps: int, warmup: int, workers: int,
              profile_dir: Path | None = None, name: str = "") -> dict:
    bench = _Bench(dataclasses.replace(s, limit_train=0, per_class_train=0), steps, warmup)
    bench.model_alone()
    bench.engine(profile_dir, name)
    bench.conventional(workers)
    return bench.result()


def profile(step, device, steps: int, out_dir: Path, name: str) -> Path:
    """torch.profiler over `steps` engine steps: the operator table sorted by device time
    (CPU time without a GPU) and a Chrome trace, to see whether launches, memory or Python
    limit a figure."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_profile(activities=activities, record_shapes=False) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    text = prof.key_averages().table(sort_by=key, row_limit=30)
    path = out_dir / f"bench-profile-{name}.txt"
    rd.atomic_write_text(path, f"{steps} engine steps of {name}\n{text}\n")
    prof.export_chrome_trace(str(out_dir / f"bench-trace-{name}.json"))
    return path


def machine() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["python -m engine"] + sys.argv[1:])}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        try:
            import pynvml
            pynvml.nvmlInit()
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # nvidia-ml-py absent or no NVML: the driver is a nicety here
            pass
    return info


def table_of(results: dict) -> Table:
    where = results["machine"].get("gpu") or f"CPU ({results['machine']['cpus']} cores)"
    table = Table(f"Training throughput on {where}, torch {results['machine']['torch']}",
                  [("Experiment", TEXT), ("Path", TEXT), ("images/s", RATE), ("step ms", RATE),
                   ("peak MiB", RATE), ("/model", TEXT), ("/conv.", TEXT)])
    for name, res in results["experiments"].items():
        st = res["settings"]
        for r in res["rows"]:
            table.rows.append([name, r["label"], r["images_per_s"], r["step_ms"], r["peak_mb"],
                               _ratio(r["vs_model"]), _ratio(r["vs_conventional"])])
        table.notes.append(
            f"{name}: {st['model']} {st['image_size']}px, task {st['task']}, "
            f"{res['images_per_step']} images/step, bf16 {st['bf16']}, channels_last "
            f"{st['channels_last']}, compile {st['compile']}; data {res['data']}; "
            f"conventional: {res['rows'][-1]['note']}")
    table.notes.append(EXPLAIN)
    table.notes.append(f"{results['steps']} timed steps after {results['warmup']} warm-up "
                       "steps per path; one process, same model and device")
    return table


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def run_bench(settings: dict[str, Settings], out_dir: Path, steps: int, warmup: int,
              workers: int, profile_dir: Path | None) -> tuple[dict, Table, list[Path]]:
    results = {"machine": machine(), "steps": steps, "warmup": warmup, "workers": workers,
               "experiments": {}}
    for name, s in settings.items():
        results["experiments"][name] = bench_one(s, steps, warmup, workers, profile_dir, name)
    table = table_of(results)
    paths = export_table(table, out_dir, "bench")
    json_path = Path(out_dir) / "bench.json"
    rd.atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
    return results, table, paths + [json_path]

