"""One run's training in its process: set-up (data, model, task, checkpoint), the epochs
(steps, logging, the stop signal), evaluation, the k-NN monitor and the end (summary,
predictions, probe). engine/train/execute.py starts it and maps how it ended."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from engine import launch, tasks
from engine.core import progress, provenance
from engine.core import rundir as rd
from engine.core.registry import TASKS
from engine.core.settings import Pretrained, Settings, WeightsFile
from engine.data.datasets import load_dataset, steps_per_epoch
from engine.models import weights
from engine.models.zoo import count_params, load_init, train_mode
from engine.perf import forecast
from engine.report.overview import effective_text
from engine.tasks import probe
from engine.train import checkpoint, distributed, environment, records
from engine.train.control import RunLog, Stop
from engine.train.evaluate import evaluate
from engine.train.optim import Ema, Plateau, lr_factor
from engine.train.records import epoch_line, summarize, trim_metrics, write_predictions
from engine.train.step import (
    Stepper,
    autocast_for,
    configure_backends,
    decide,
    pick_device,
    prepare_batch,
    trainable_model,
)


class Diverged(Exception):
    pass


@dataclass
class Epoch:
    """What train_one_epoch measured; None fields when it was stopped by a signal."""

    train_loss: float | None
    train_acc: float | None
    lr: float
    train_s: float  # training steps only
    images: int
    started: float  # time.time() at its start; epoch_s counts evaluation too
    peak_mb: float | None = None  # CUDA memory peak of the training steps alone
    cpu_s: float | None = None  # the process's CPU time over the training steps


class Run:
    """One run's data, model and loop."""

    def __init__(self, run_dir: Path, s: Settings, log: RunLog, status: dict, stop: Stop,
                 ranks: distributed.Ranks = distributed.SINGLE):
        self.dir, self.s, self.log, self.status, self.stop = run_dir, s, log, status, stop
        self.ranks, self.main = ranks, ranks.main
        self.agreed_stop = False  # several ranks: the stop they agreed on at the last sync
        self.task = tasks.build(s)
        self.ckpt_dir = run_dir / rd.CHECKPOINTS

    @property
    def stopped(self) -> bool:
        return self.agreed_stop if self.ranks.distributed else self.stop.signal is not None

    def setup(self, init_from: str, resume: bool) -> checkpoint.TrainState | None:
        s = self.s
        torch.manual_seed(s.seed)
        self.device = pick_device(s.device)
        if self.ranks.distributed:
            self.device = distributed.join(self.ranks, self.device)
            init_from, resume = distributed.from_main(init_from, resume)
        self.effective = decide(s, self.device)
        configure_backends(self.device, self.effective)
        self.status["effective"] = self.effective.record()
        self.log(f"effective: {effective_text(self.status)} on {self.device}")
        t0 = time.time()
        data = load_dataset(s)
        if self.main:
            self.write_provenance(data)
        self.data = data.place(self.device, s.data_placement)
        train_x = getattr(self.data.train, "x", None)
        where = ("on the device" if train_x is not None and train_x.device == self.device
                 else "streamed from the host")
        val = f"{len(self.data.val)} validation, " if self.data.val is not None else ""
        self.log(f"data: {self.data.source}; {len(self.data.train)} train, {val}"
                 f"{len(self.data.test)} test, {len(self.data.classes)} classes, {where} "
                 f"({time.time() - t0:.1f}s)")
        if self.main:
            self.ckpt_dir.mkdir(exist_ok=True)
        last = self.ckpt_dir / "last.pt"
        state = checkpoint.TrainState.load(last) if resume and last.exists() else None

        def load(model):
            if state is not None:
                model.load_state_dict(state.model)
            elif isinstance(s.init, (Pretrained, WeightsFile)):
                self.log(weights.load_published(model, s, init_from, self.log))
            elif init_from:
                skipped = load_init(model, s.model, Path(init_from))
                self.log(f"init: weights from {init_from}; new head: "
                         f"{', '.join(skipped) or 'none'}")

        self.model, self.opt = trainable_model(s, self.task, len(self.data.classes),
                                               self.device, load,
                                               self.effective.channels_last)
        self.ema = Ema(self.model, s.ema) if s.ema else None
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.norm, line = weights.normalizer(s, self.data, self.device,
                                               self.effective.channels_last)
        self.log(line)
        self.autocast = autocast_for(self.device, self.effective.bf16)
        trained = (distributed.wrap(self.model, self.device) if self.ranks.distributed
                   else self.model)  # DDP averages the gradients; self.model stays unwrapped
        self.stepper = Stepper(trained, self.task, self.effective.compiled, self.log,
                               self.fell_back)
        return state

    def fell_back(self, line: str) -> None:
        """torch.compile failed at the first step: the run goes on eagerly, and says so."""
        self.effective = self.effective.fell_back(line, compiled=False)
        self.status["effective"] = self.effective.record()
        if self.main:
            rd.atomic_write_json(self.dir / rd.STATUS, self.status)

    def write_provenance(self, data) -> None:
        """provenance.json at every start (a resume records where it resumed); a rerun
        says, a line each, how its code, environment or data differ from the original."""
        t0 = time.time()
        meta = rd.read_config(self.dir)
        record = environment.write(self.dir, self.s, self.device, data, meta.get("config_file"),
                                   self.ranks.hosts)
        original = meta.get("rerun_of")
        if original:
            old = rd.read_json(Path(original) / provenance.PROVENANCE)
            lines = provenance.differences(old, record) if old else [
                f"{original} has no {provenance.PROVENANCE}: nothing to check against"]
            for line in lines:
                self.log(f"rerun: {line}")
        self.log(f"provenance: commit {provenance.describe_code(record['code'])}, data "
                 f"{record['data']['hash']} ({time.time() - t0:.2f}s)")

    def run(self, init_from: str, resume: bool) -> tuple[str, str | None]:
        state = self.setup(init_from, resume)
        s, cuda = self.s, self.device.type == "cuda"
        first, best, self.plateau = 1, (None, 0), Plateau()
        if state is not None:
            self.opt.load_state_dict(state.optimizer)
            if self.ema is not None:
                self.ema.averaged.load_state_dict(state.ema)
            if state.task:
                self.task.load_state_dict(state.task)
            first, best, self.plateau = state.epoch + 1, (state.best_value, state.best_epoch), \
                state.plateau
        if resume and self.main:
            trim_metrics(self.dir / rd.METRICS, first - 1)
            self.log(f"resume: from epoch {first - 1} checkpoint" if state is not None else
                     "resume: no checkpoint yet, starting from epoch 1")
        total, trainable = count_params(self.model)
        gpu = torch.cuda.get_device_name(self.device) if cuda else None
        self.status.update(device=str(self.device), gpu=gpu, params_total=total,
                           params_trainable=trainable, epoch=first - 1)
        if self.ranks.distributed:
            self.status["processes"] = self.ranks.world
            self.status["hosts"] = sorted(set(self.ranks.hosts), key=self.ranks.hosts.index)
        self.steps_per = steps_per_epoch(len(self.data.train), s.batch_size)
        self.log_every = s.log_every or records.log_interval(s.epochs * self.steps_per)
        if self.main:
            rd.atomic_write_json(self.dir / rd.STATUS, self.status)
            done = [m for m in rd.read_jsonl(self.dir / rd.METRICS) if m.get("kind") == "epoch"]
            self.progress = progress.Progress(self.status, s.epochs, self.steps_per, done,
                                              self.task.headline)
            self.forecast = forecast.LiveForecast(self.dir)
        ways = (f" x {self.ranks.world} processes ({dist.get_backend()}; batches of "
                f"{s.batch_size // self.ranks.world} per process)"
                if self.ranks.distributed else "")
        self.log(f"model: {s.model}, {total:,} parameters, {trainable:,} trainable; task "
                 f"{s.task}; device {gpu or self.device}{ways}; {self.steps_per} steps/epoch "
                 f"of {self.task.images_per_step(s.batch_size)} images")
        for epoch in range(first, s.epochs + 1):
            result = self.train_one_epoch(epoch)
            if self.stopped:
                last = "no checkpoint yet" if epoch == 1 else \
                    f"checkpoints/last.pt holds epoch {epoch - 1}"
                if self.stop.signal and launch.current().stopping(self.stop.signal):
                    self.log(f"stopped by signal {self.stop.signal} in epoch {epoch}; {last}; "
                             "the job is requeued and resumes from there")
                    return "queued", None
                by = self.stop.signal or "of another rank"
                self.log(f"cancelled by signal {by} in epoch {epoch}; {last} "
                         f"(python -m engine resume {self.dir} continues from there)")
                return "cancelled", f"cancelled in epoch {epoch}"
            best = self.end_epoch(epoch, result, best)
        if self.main:
            self.finish(total, trainable, gpu)
        return "done", None

    def train_one_epoch(self, epoch: int) -> Epoch:
        s, model, device, r = self.s, self.model, self.device, self.ranks
        other = 1_000_000_007 * r.rank  # each rank its own augmentation draws (rank 0: none)
        gen = torch.Generator(device=device).manual_seed(
            (s.seed * 1_000_003 + epoch) * 2 + 1 + other)
        # kornia's views and dropout draw from the global generator: seeded per epoch too,
        # so that a resumed epoch sees the views an uninterrupted one would
        torch.manual_seed(s.seed * 1_000_003 + epoch + other)
        train_mode(model, s.train_layers)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        t0, cpu0 = time.time(), time.process_time()
        if self.main:
            self.progress.start_epoch()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen, scored, lr = 0, 0, s.lr
        total = s.epochs * self.steps_per
        step0 = (epoch - 1) * self.steps_per
        batches = self.data.train.batches(s.batch_size, device, drop_last=True,
                                          seed=s.seed * 1_000_003 + epoch, rank=r.rank,
                                          world=r.world)
        for i, (xb, yb) in enumerate(batches):
            step = step0 + i
            x, y = prepare_batch(xb, yb, s, self.task, gen)
            lr = s.lr * lr_factor(s, step, self.steps_per) * self.plateau.factor
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss, out, target = self.stepper(self.opt, self.norm(x), y, self.autocast)
            self.task.after_step(model, step, total)
            if self.ema is not None:
                self.ema.update(model, step)
            loss_sum += loss.detach() * len(x)
            seen += len(x)
            if out is not None:  # a task with logits and targets: training accuracy
                correct += (out.detach().argmax(1) == target).sum()
                scored += target.numel()
            if (step + 1) % self.log_every == 0:
                self.log_step(epoch, step, i, self.step_loss(loss), lr)
            if self.main and self.progress.step(i + 1):
                rd.atomic_write_json(self.dir / rd.STATUS, self.status)
            if self.stopped:
                break
        if r.distributed:  # the ranks leave the epoch together, stopped or not
            _, self.agreed_stop = distributed.agree(loss_sum, self.stop.signal is not None)
        peak = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) / 2**20
            torch.cuda.reset_peak_memory_stats(device)  # evaluation's peak is its own
        if self.stopped:
            return Epoch(None, None, lr, time.time() - t0, seen, t0)
        if r.distributed:
            loss_total, right, seen, scored = distributed.sums(loss_sum, correct, seen, scored,
                                                               device=device)
            seen, scored = int(seen), int(scored)
        else:
            loss_total, right = loss_sum.item(), correct.item()
        return Epoch(loss_total / seen, right / scored if scored else None, lr,
                     time.time() - t0, seen, t0, peak, time.process_time() - cpu0)

    def step_loss(self, loss: torch.Tensor) -> float:
        """The loss a step line records; over several ranks their mean, and the one
        collective where they agree whether to stop."""
        if not self.ranks.distributed:
            return loss.item()
        mean, self.agreed_stop = distributed.agree(loss, self.stop.signal is not None)
        return mean

    def log_step(self, epoch: int, step: int, i: int, loss: float, lr: float) -> None:
        if not math.isfinite(loss):
            raise Diverged(f"loss became {loss} at epoch {epoch}, step {step + 1}")
        if not self.main:
            return
        rd.append_jsonl(self.dir / rd.METRICS, {"kind": "step", "epoch": epoch,
                                                "step": step + 1, "loss": loss, "lr": lr})
        if self.log.echo and sys.stdout.isatty():
            print(f"\r  epoch {epoch}/{self.s.epochs} step {i + 1}/{self.steps_per} "
                  f"loss {loss:.4f}", end="\r", flush=True)

    def end_epoch(self, epoch: int, result: Epoch, best: tuple) -> tuple:
        """Evaluate, record the epoch, keep the best weights and the resume checkpoint."""
        s, cuda = self.s, self.device.type == "cuda"
        if not math.isfinite(result.train_loss):
            raise Diverged(f"loss became {result.train_loss} in epoch {epoch}")
        record = {"kind": "epoch", "epoch": epoch, "train_loss": result.train_loss,
                  "train_acc": result.train_acc, **self.measure(epoch), "lr": result.lr,
                  "images_per_s": result.images / result.train_s if result.train_s > 0
                  else None,
                  "gpu_mem_peak_mb": result.peak_mb,  # training steps; evaluation's below
                  "gpu_mem_eval_peak_mb": (torch.cuda.max_memory_allocated(self.device) / 2**20
                                           if cuda else None),
                  # the CPU side: cores busy over the training steps, the process's peak
                  # resident memory (the Run view's memory plot on a CPU run)
                  "cpu_cores": result.cpu_s / result.train_s if result.train_s > 0 else None,
                  "rss_peak_mb": records.rss_peak_mb(),
                  "epoch_s": time.time() - result.started}
        preds = record.pop("preds")
        why = self.task.collapsed(epoch, result.train_loss)
        if why and self.main:
            self.flag_collapse(why)
        watched = record.get("val_loss", record["test_loss"])
        if watched is not None:  # every rank: the same figures, so the same learning rate
            self.plateau.update(watched, s)
        value = record.get(self.task.best_metric)
        better = value is not None and self.task.better(value, best[0])
        if better:
            best = (value, epoch)
        if not self.main:
            return best
        rd.append_jsonl(self.dir / rd.METRICS, record, durable=True)
        if better:
            checkpoint.save_weights(self.ckpt_dir / "best.pt", self.eval_model.state_dict(),
                                    epoch)
            if s.predictions and preds is not None:
                write_predictions(self.dir / rd.PREDICTIONS, preds)
        checkpoint.TrainState(
            self.model.state_dict(), self.opt.state_dict(), epoch, best[0], best[1],
            self.plateau, self.ema.averaged.state_dict() if self.ema is not None else None,
            self.task.state_dict()).save(self.ckpt_dir / "last.pt")
        self.progress.end_epoch(record)
        self.forecast.refresh(self.status, last=epoch == s.epochs)
        rd.atomic_write_json(self.dir / rd.STATUS, self.status)
        self.log(f"epoch {epoch}/{s.epochs}: " + " | ".join(epoch_line(record)))
        return best

    def measure(self, epoch: int) -> dict:
        """The epoch's test metrics: loss and accuracy (a task with targets on the test
        set), the k-NN monitor and the embeddings' spread (every knn_every epochs and the
        last), and the predictions for predictions.csv."""
        s, out = self.s, {"test_loss": None, "test_acc": None, "preds": None}
        if self.ranks.distributed:
            distributed.broadcast_buffers(self.eval_model)
        if not TASKS[s.task].trains_features:
            for split in ("val", "test") if self.data.val is not None else ("test",):
                loss, acc, preds = evaluate(self.eval_model, getattr(self.data, split),
                                            self.task, s, self.norm, self.autocast,
                                            self.device, self.ranks)
                if not math.isfinite(loss):
                    raise Diverged(f"{split} loss became {loss} after epoch {epoch}")
                out.update({f"{split}_loss": loss, f"{split}_acc": acc})
            out["preds"] = preds  # the test set's
        if s.knn_every and (epoch % s.knn_every == 0 or epoch == s.epochs) and self.main:
            train_f, train_y, test_f, test_y = self.features()
            out["knn_acc"] = probe.knn_accuracy(train_f, train_y, test_f, test_y, s.knn_k,
                                                s.knn_t)
            out["spread"] = probe.spread(test_f)
            if out["spread"] < probe.COLLAPSED:
                self.flag_collapse(f"the embeddings' spread is {out['spread']:.3f} (below "
                                   f"{probe.COLLAPSED}): they have collapsed towards one point")
        return out

    def flag_collapse(self, why: str) -> None:
        """status.json's collapsed flag (the app's and `engine runs`' mark) and the log's
        line, once per run."""
        if not self.status.get("collapsed"):
            self.status["collapsed"] = True
            self.log(f"collapse: {why}")

    def features(self):
        """Backbone features of the train and test splits (no augmentation)."""
        args = (self.norm, self.autocast, self.device, self.s.eval_batch_size)
        train_f, train_y = probe.features(self.eval_model, self.s.model, self.data.train, *args)
        test_f, test_y = probe.features(self.eval_model, self.s.model, self.data.test, *args)
        return train_f, train_y, test_f, test_y

    def finish(self, total: int, trainable: int, gpu: str | None) -> None:
        best = checkpoint.read(self.ckpt_dir / "best.pt", self.device)
        self.eval_model.load_state_dict(best["model"])  # what predictions and probes score
        if self.data.predict is not None and not TASKS[self.s.task].trains_features:
            # an unlabelled split: submission.csv from the best epoch (a head that scores
            # classes, not a backbone's features)
            _, _, preds = evaluate(self.eval_model, self.data.predict, self.task, self.s,
                                   self.norm, self.autocast, self.device)
            write_predictions(self.dir / rd.SUBMISSION, preds)
            self.log(f"submission: {len(preds)} predictions in {rd.SUBMISSION}")
        if self.s.linear_probe_epochs:
            t0 = time.time()
            self.progress.start_phase("probe", self.s.linear_probe_epochs)
            rd.atomic_write_json(self.dir / rd.STATUS, self.status)

            def probed(done: int) -> None:
                if self.progress.phase_step(done):
                    rd.atomic_write_json(self.dir / rd.STATUS, self.status)
            acc = probe.linear_probe(*self.features(), self.s.linear_probe_epochs,
                                     seed=self.s.seed, on_epoch=probed)
            self.progress.end_phase()
            rd.append_jsonl(self.dir / rd.METRICS, {"kind": "probe", "epoch": best["epoch"],
                                                    "linear_acc": acc,
                                                    "probe_s": time.time() - t0})
            self.log(f"linear probe on epoch {best['epoch']}'s frozen features: test acc "
                     f"{acc:.4f} ({time.time() - t0:.1f}s)")
        summary = summarize(self.dir, self.s, self.task, total, trainable,
                            self.data.classes, gpu, str(self.device))
        rd.atomic_write_json(self.dir / rd.SUMMARY, summary)
        head = self.task.headline.replace("_", " ")
        self.log(f"done: {head} {summary.get(self.task.headline + '_at_best', float('nan')):.4f}"
                 f" at epoch {summary['best_epoch']} ({self.task.best_means}), "
                 f"{summary['wall_s']:.0f}s")
