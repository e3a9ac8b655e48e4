"""One training run, top to bottom, writing everything into its run directory."""
from __future__ import annotations

import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from . import rundir as rd
from .config import Settings
from .data import (DataError, Normalizer, crop_flip, cutout, load_dataset, rotate_batch,
                   steps_per_epoch)
from .models import InitError, build_model, count_params, freeze_except, load_init, train_mode


class Diverged(Exception):
    pass


class RunLog:
    """log.txt for the record; the same lines on stdout when `echo` is set."""

    def __init__(self, run_dir: Path, echo: bool):
        self.path = run_dir / rd.LOG
        self.echo = echo

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, flush=True)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise DataError("device = \"cuda\" but no CUDA device is available "
                        "(use device = \"auto\" or \"cpu\")")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when amp is on; nothing on the CPU."""
    return (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp
            else nullcontext())


def images_per_step(s: Settings) -> int:
    return s.batch_size * (4 if s.task == "rotation" and s.rotation_mode == "all4" else 1)


def trainable_model(s: Settings, num_classes: int, device: torch.device, load=None):
    """The model as a run trains it: built, given its weights by `load(model)` (resume or
    init), frozen but for train_layers, in training mode (frozen BatchNorm stays in eval),
    on the device (channels_last on CUDA when set), with its optimiser."""
    model = build_model(s.model, num_classes, s.image_size, s.activation, s.dropout)
    if load is not None:
        load(model)
    freeze_except(model, s.train_layers)
    train_mode(model, s.train_layers)
    model.to(device)
    if device.type == "cuda" and s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, make_optimizer(s, [p for p in model.parameters() if p.requires_grad])


def prepare_batch(xb: torch.Tensor, yb: torch.Tensor, s: Settings, gen: torch.Generator):
    """Augmentation and the rotation pretext, as batched tensor ops on a uint8 batch."""
    if s.augment != "none":
        xb = crop_flip(xb, gen, crop=s.augment == "crop_flip", flip=True)
    if s.cutout:
        xb = cutout(xb, s.cutout, gen)
    if s.task == "rotation":
        xb, yb = rotate_batch(xb, s.rotation_mode, gen)
    return xb, yb


def optimise(model, opt, x, y, autocast, label_smoothing: float = 0.0):
    """One training step: forward (under autocast), loss in fp32, backward, update."""
    with autocast:
        out = model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return out, loss


class Ema:
    """An exponential moving average of the weights and BatchNorm buffers; when on, it is
    what gets evaluated, checkpointed as best and used for predictions. The decay warms up
    as min(decay, (1 + t) / (10 + t)) so that a short run's average is not stuck near the
    random initialisation (a plain 0.999 average needs thousands of steps to forget it)."""

    def __init__(self, model, decay: float):
        self.decay, self.now = decay, 0.0
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        self.module = self.averaged.module

    def update(self, model, step: int) -> None:
        self.now = min(self.decay, (1 + step) / (10 + step))
        self.averaged.update_parameters(model)

    @torch.no_grad()
    def _lerp(self, averaged, current, _n):
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - self.now)
        else:  # integer buffers (BatchNorm's batch count) follow the model
            for a, c in zip(averaged, current):
                a.copy_(c)


def lr_factor(s: Settings, step: int, steps_per: int) -> float:
    """Multiplier of the base learning rate at a global step (schedules are per step, so a
    resumed run picks up exactly where it stopped)."""
    total = s.epochs * steps_per
    warm = int(s.warmup_epochs * steps_per)
    if s.schedule == "onecycle":
        warm = warm or int(0.3 * total)
    if step < warm:
        return (step + 1) / warm
    epoch = step / steps_per
    if s.schedule in ("constant", "plateau"):
        return 1.0
    if s.schedule == "step":
        return s.gamma ** int(epoch // s.step_size)
    if s.schedule == "multistep":
        return s.gamma ** sum(1 for m in s.milestones if epoch >= m)
    progress = (step - warm) / max(1, total - warm)
    if s.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1 - progress)  # onecycle: linear up, then linear down to zero


def make_optimizer(s: Settings, params):
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov,
                               weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.RMSprop(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Stop:
    """SIGTERM/SIGINT ask the loop to stop after the current step."""

    def __init__(self):
        self.signal = None

    def __call__(self, signum, frame):
        self.signal = signum

    def install(self):
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


def logits(model, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """The model's output; with tta, the mean of the outputs for the image and its mirror."""
    out = model(x)
    return (out + model(x.flip(3))) / 2 if tta else out


def evaluate(model, split, s: Settings, norm: Normalizer, autocast, device):
    """Loss, accuracy and per-example predictions on a split, in large batches, in the
    split's order. For the rotation task every image is scored in all four rotations, ids
    4*i + k. An unlabelled split gives predictions only (loss and accuracy None)."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    preds = []
    with torch.inference_mode():
        for xb, yb in split.batches(s.eval_batch_size, device):
            if s.task == "rotation":
                xb, yb = rotate_batch(xb, "all4")
            with autocast:
                out = logits(model, norm(xb), s.tta)
            p = out.argmax(1)
            if yb is not None:
                loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").item()
                correct += (p == yb).sum().item()
                count += yb.numel()
            if s.task == "rotation":  # back from [k][image] order to [image][k]
                p = p.view(4, -1).t().reshape(-1)
            preds.append(p.cpu())
    if not count:
        return None, None, torch.cat(preds)
    return loss_sum / count, correct / count, torch.cat(preds)


def write_predictions(path: Path, preds: torch.Tensor) -> None:
    lines = ["id,label"] + [f"{i},{int(p)}" for i, p in enumerate(preds.tolist())]
    rd.atomic_write_text(path, "\n".join(lines) + "\n")


def execute(run_dir: Path, s: Settings, init_from: str = "", resume: bool = False,
            echo: bool = True) -> str:
    """Train, record, and return the final state. Never raises for a run's own failure:
    the state and the reason land in status.json."""
    run_dir = Path(run_dir)
    log = RunLog(run_dir, echo)
    status = rd.read_json(run_dir / rd.STATUS) or {}
    status.update(state="running", pid=os.getpid(), pid_start=rd.process_start_time(os.getpid()),
                  host=rd.hostname(), ended=None, error=None, epochs=s.epochs)
    if not (resume and status.get("started")):
        status["started"] = rd.now_iso()
    rd.atomic_write_json(run_dir / rd.STATUS, status)
    stop = Stop()
    stop.install()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        state, error = _train(run_dir, s, init_from, resume, log, status, stop)
    except (DataError, InitError) as exc:
        state, error = "failed", str(exc)
        log(f"failed: {error}")
    except Diverged as exc:
        state, error = "diverged", str(exc)
        log(f"diverged: {error}")
    except Exception as exc:  # the run fails; the traceback goes to its log, not the user
        state, error = "failed", f"{type(exc).__name__}: {exc}"
        with open(run_dir / rd.LOG, "a", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        log(f"failed: {error}")
    status.update(state=state, error=error, ended=rd.now_iso())
    rd.atomic_write_json(run_dir / rd.STATUS, status)
    return state


def _train(run_dir, s: Settings, init_from, resume, log, status, stop):
    torch.manual_seed(s.seed)
    device = pick_device(s.device)
    cuda = device.type == "cuda"
    t0 = time.time()
    data = load_dataset(s)
    data = data.place(device, s.data_placement)
    where = ("on the device" if getattr(data.train, "x", None) is not None
             and data.train.x.device == device else "streamed from the host")
    log(f"data: {data.source}; {len(data.train)} train, {len(data.test)} test, "
        f"{len(data.classes)} classes, {where} ({time.time() - t0:.1f}s)")
    num_classes = 4 if s.task == "rotation" else len(data.classes)

    ckpt_dir = run_dir / rd.CHECKPOINTS
    ckpt_dir.mkdir(exist_ok=True)
    last_path = ckpt_dir / "last.pt"
    state = (torch.load(last_path, map_location="cpu", weights_only=True)
             if resume and last_path.exists() else None)

    def load(model):
        if state is not None:
            model.load_state_dict(state["model"])
        elif init_from:
            skipped = load_init(model, Path(init_from))
            log(f"init: weights from {init_from}; new head: {', '.join(skipped) or 'none'}")

    model, opt = trainable_model(s, num_classes, device, load)
    total, trainable = count_params(model)
    ema = Ema(model, s.ema) if s.ema else None
    eval_model = ema.module if ema is not None else model
    first_epoch, best = 1, {"loss": math.inf, "epoch": 0}
    plateau = {"factor": 1.0, "bad": 0, "best": math.inf}
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.averaged.load_state_dict(state["ema"])
        first_epoch = int(state["epoch"]) + 1
        best = {"loss": float(state["best_loss"]), "epoch": int(state["best_epoch"])}
        plateau = {"factor": float(state["plateau_factor"]), "bad": int(state["plateau_bad"]),
                   "best": float(state["plateau_best"])}
        _trim_metrics(run_dir / rd.METRICS, first_epoch - 1)
        log(f"resume: from epoch {first_epoch - 1} checkpoint")
    elif resume:
        _trim_metrics(run_dir / rd.METRICS, 0)
        log("resume: no checkpoint yet, starting from epoch 1")

    step_model = torch.compile(model) if s.compile else model
    autocast = autocast_for(device, s.amp)
    norm = Normalizer(data.mean, data.std, device, cuda and s.channels_last)
    n_train = len(data.train)
    steps_per = steps_per_epoch(n_train, s.batch_size)
    per_step = images_per_step(s)
    gpu_name = torch.cuda.get_device_name(device) if cuda else None
    status.update(device=str(device), gpu=gpu_name, params_total=total,
                  params_trainable=trainable, epoch=first_epoch - 1)
    rd.atomic_write_json(run_dir / rd.STATUS, status)
    log(f"model: {s.model}, {total:,} parameters, {trainable:,} trainable; task {s.task}; "
        f"device {gpu_name or device}; {steps_per} steps/epoch of {per_step} images")

    for epoch in range(first_epoch, s.epochs + 1):
        gen = torch.Generator(device=device).manual_seed((s.seed * 1_000_003 + epoch) * 2 + 1)
        train_mode(model, s.train_layers)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        t_epoch = time.time()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        step0 = (epoch - 1) * steps_per
        batches = data.train.batches(s.batch_size, device, seed=s.seed * 1_000_003 + epoch,
                                     drop_last=True)
        for i, (xb, yb) in enumerate(batches):
            step = step0 + i
            xb, yb = prepare_batch(xb, yb, s, gen)
            lr = s.lr * lr_factor(s, step, steps_per) * plateau["factor"]
            for g in opt.param_groups:
                g["lr"] = lr
            try:
                out, loss = optimise(step_model, opt, norm(xb), yb, autocast, s.label_smoothing)
            except Exception as exc:  # torch.compile fails lazily, at the first call
                if step_model is model:
                    raise
                log(f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly")
                step_model = model
                out, loss = optimise(model, opt, norm(xb), yb, autocast, s.label_smoothing)
            if ema is not None:
                ema.update(model, step)
            loss_sum += loss.detach() * yb.numel()
            correct += (out.detach().argmax(1) == yb).sum()
            seen += yb.numel()
            if (step + 1) % s.log_every == 0:
                value = loss.item()
                if not math.isfinite(value):
                    raise Diverged(f"loss became {value} at epoch {epoch}, step {step + 1}")
                rd.append_jsonl(run_dir / rd.METRICS, {"kind": "step", "epoch": epoch,
                                                       "step": step + 1, "loss": value, "lr": lr})
                if log.echo and sys.stdout.isatty():
                    print(f"\r  epoch {epoch}/{s.epochs} step {i + 1}/{steps_per} "
                          f"loss {value:.4f}", end="\r", flush=True)
            if stop.signal is not None:
                break
        if cuda:
            torch.cuda.synchronize(device)
        train_s = time.time() - t_epoch
        if stop.signal is not None:
            log(f"cancelled by signal {stop.signal} in epoch {epoch}; "
                f"checkpoints/last.pt holds epoch {epoch - 1} (python -m engine resume "
                f"{run_dir} continues from there)")
            return "cancelled", f"cancelled in epoch {epoch}"
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise Diverged(f"loss became {train_loss} in epoch {epoch}")
        test_loss, test_acc, preds = evaluate(eval_model, data.test, s, norm, autocast, device)
        if not math.isfinite(test_loss):
            raise Diverged(f"test loss became {test_loss} after epoch {epoch}")
        record = {
            "kind": "epoch", "epoch": epoch, "train_loss": train_loss,
            "train_acc": correct.item() / seen, "test_loss": test_loss, "test_acc": test_acc,
            "lr": lr, "images_per_s": seen / train_s if train_s > 0 else None,
            "gpu_mem_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
            "epoch_s": time.time() - t_epoch,
        }
        rd.append_jsonl(run_dir / rd.METRICS, record)
        if test_loss < best["loss"]:
            best = {"loss": test_loss, "epoch": epoch}
            save_atomic({"model": eval_model.state_dict(), "epoch": epoch},
                        ckpt_dir / "best.pt")
            if s.predictions:
                write_predictions(run_dir / rd.PREDICTIONS, preds)
        if s.schedule == "plateau":
            if test_loss < plateau["best"]:
                plateau.update(best=test_loss, bad=0)
            else:
                plateau["bad"] += 1
                if plateau["bad"] > s.patience:
                    plateau.update(factor=plateau["factor"] * s.gamma, bad=0)
        save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                     **({"ema": ema.averaged.state_dict()} if ema is not None else {}),
                     "epoch": epoch, "best_loss": best["loss"], "best_epoch": best["epoch"],
                     "plateau_factor": plateau["factor"], "plateau_bad": plateau["bad"],
                     "plateau_best": plateau["best"]}, last_path)
        status["epoch"] = epoch
        rd.atomic_write_json(run_dir / rd.STATUS, status)
        mem = f", {record['gpu_mem_peak_mb']:.0f} MiB" if cuda else ""
        log(f"epoch {epoch}/{s.epochs}: train loss {train_loss:.4f} acc {record['train_acc']:.4f}"
            f" | test loss {test_loss:.4f} acc {test_acc:.4f} | lr {lr:.4g} | "
            f"{record['images_per_s']:.0f} img/s{mem} | {record['epoch_s']:.1f}s")

    if data.predict is not None:  # unlabelled test split: submission.csv from the best epoch
        eval_model.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location=device,
                                              weights_only=True)["model"])
        _, _, preds = evaluate(eval_model, data.predict, s, norm, autocast, device)
        write_predictions(run_dir / rd.SUBMISSION, preds)
        log(f"submission: {len(preds)} predictions in {rd.SUBMISSION}")
    summary = summarize(run_dir, s, total, trainable, data.classes, gpu_name, str(device))
    rd.atomic_write_json(run_dir / rd.SUMMARY, summary)
    log(f"done: test acc {summary['test_acc_at_best']:.4f} at epoch {summary['best_epoch']} "
        f"(lowest test loss), final {summary['final_test_acc']:.4f}, "
        f"{summary['wall_s']:.0f}s")
    return "done", None


def _trim_metrics(path: Path, last_epoch: int) -> None:
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


def summarize(run_dir: Path, s: Settings, total, trainable, classes, gpu_name, device) -> dict:
    epochs = [m for m in rd.read_jsonl(run_dir / rd.METRICS) if m.get("kind") == "epoch"]
    best = min(epochs, key=lambda m: m["test_loss"])
    rates = [m["images_per_s"] for m in epochs if m.get("images_per_s")]
    mems = [m["gpu_mem_peak_mb"] for m in epochs if m.get("gpu_mem_peak_mb") is not None]
    status = rd.read_json(run_dir / rd.STATUS) or {}
    started = rd.parse_iso(status.get("started")) or time.time()
    return {
        "task": s.task, "epochs": len(epochs), "best_epoch": best["epoch"],
        "best_test_loss": best["test_loss"], "test_acc_at_best": best["test_acc"],
        "final_test_acc": epochs[-1]["test_acc"], "best_test_acc": max(m["test_acc"] for m in epochs),
        "final_train_acc": epochs[-1]["train_acc"],
        "wall_s": time.time() - started, "train_s": sum(m["epoch_s"] for m in epochs),
        "median_images_per_s": statistics.median(rates) if rates else None,
        "gpu_mem_peak_mb": max(mems) if mems else None,
        "params_total": total, "params_trainable": trainable,
        "classes": list(classes) if s.task == "classify" else ["0", "90", "180", "270"],
        "device": device, "gpu": gpu_name,
    }
