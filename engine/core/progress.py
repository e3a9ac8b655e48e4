"""A run's progress, kept current in its status.json: the trainer writes it at the end of
every epoch and every few seconds within one; every viewer (the app, `engine status`,
the runs table) reads it from there, never from metrics.jsonl, so that what a poll costs
does not grow with a run's history.

Fields (documented in docs/run-format.md): step and steps (within the epoch under way),
best_acc, images_per_s (median over finished epochs, as the summary reports it), epoch_s
(mean seconds per finished epoch), eta_s (seconds left, as of `updated`), active_before
and segment_start (so that a resumed run's elapsed time leaves out the time it was
stopped), updated. No torch.
"""
from __future__ import annotations

import statistics
import time

from engine.core.rundir import parse_iso

WRITE_EVERY_S = 2.0


class Progress:
    """The trainer's side: keeps the status dict's progress fields current."""

    def __init__(self, status: dict, epochs: int, steps: int, done: list[dict],
                 headline: str = "test_acc"):
        self.status, self.epochs, self.steps, self.headline = status, epochs, steps, headline
        self.done = list(done)  # the epoch records so far (after a resume, from metrics)
        self.epoch_t0 = self.written = time.time()
        status.update(steps=steps, step=0, **self._summary())

    def _summary(self) -> dict:
        accs = [m[self.headline] for m in self.done if m.get(self.headline) is not None]
        rates = [m["images_per_s"] for m in self.done if m.get("images_per_s")]
        secs = [m["epoch_s"] for m in self.done if m.get("epoch_s")]
        return {"best_acc": max(accs, default=None),
                "images_per_s": statistics.median(rates) if rates else None,
                "epoch_s": statistics.fmean(secs) if secs else None}

    def start_epoch(self) -> None:
        self.epoch_t0 = time.time()

    def step(self, done_in_epoch: int) -> bool:
        """After a training step; True when the status is worth writing now."""
        now = time.time()
        if now - self.written < WRITE_EVERY_S:
            return False
        per_epoch = self.status.get("epoch_s") or \
            (now - self.epoch_t0) / done_in_epoch * self.steps
        left = self.epochs - len(self.done) - done_in_epoch / self.steps
        self.status.update(step=done_in_epoch, eta_s=max(0.0, left * per_epoch), updated=now)
        self.written = now
        return True

    def end_epoch(self, record: dict) -> None:
        self.done.append(record)
        self.status.update(epoch=record["epoch"], step=0, **self._summary())
        now = time.time()
        self.status.update(eta_s=(self.epochs - record["epoch"]) * self.status["epoch_s"],
                           updated=now)
        self.written = now

    def start_phase(self, phase: str, total: int) -> None:
        """A phase after the epochs (the linear probe): its own progress and ETA, which
        stays unknown until its first step is done, never 0 s."""
        now = self.phase_t0 = self.written = time.time()
        self.status.update(phase=phase, phase_step=0, phase_steps=total, eta_s=None,
                           updated=now)

    def phase_step(self, done: int) -> bool:
        """After `done` of the phase's steps; True when the status is worth writing now."""
        now = time.time()
        if now - self.written < WRITE_EVERY_S and done < self.status["phase_steps"]:
            return False
        left = self.status["phase_steps"] - done
        self.status.update(phase_step=done, eta_s=(now - self.phase_t0) / done * left,
                           updated=now)
        self.written = now
        return True

    def end_phase(self) -> None:
        self.status.update(phase=None, phase_step=None, phase_steps=None, eta_s=0.0)


def start_segment(status: dict, resume: bool) -> None:
    """A run (re)starts: a resumed run adds its earlier segment's time to active_before
    (up to its end, or to its last status write when it was killed)."""
    now = time.time()
    if resume and status.get("segment_start"):
        last = _ts(status.get("ended")) or status.get("updated") or status["segment_start"]
        status["active_before"] = (status.get("active_before") or 0.0) + \
            max(0.0, last - status["segment_start"])
    status.update(segment_start=now, updated=now)


def _ts(iso: str | None) -> float | None:
    return parse_iso(iso)


def view(status: dict, state: str, summary: dict | None = None,
         now: float | None = None) -> dict:
    """What a viewer shows of a run's progress (`state` as Run.state derives it): best
    accuracy so far, images/s, elapsed (this run's own time), ETA counting down between
    writes, and the step within the epoch under way. Runs written before progress fields
    existed fall back to their summary."""
    now = now or time.time()
    summary = summary or {}
    start = status.get("segment_start") or _ts(status.get("started"))
    end = (status.get("updated") if state == "lost" else
           _ts(status.get("ended")) if state not in ("queued", "running") else None)
    elapsed = None
    if start:
        elapsed = (status.get("active_before") or 0.0) + ((end or now) - start)
    eta = None
    if state == "running" and status.get("eta_s") is not None:
        eta = max(0.0, status["eta_s"] - (now - (status.get("updated") or now)))
    return {
        "best_acc": status.get("best_acc", summary.get("best_test_acc")),
        "images_per_s": status.get("images_per_s", summary.get("median_images_per_s")),
        "elapsed": elapsed, "eta": eta,
        "step": status.get("step") if state == "running" else None,
        "steps": status.get("steps"),
        # a phase after the epochs, while it runs: "probe 3/100"
        "phase": (f"{status['phase']} {status.get('phase_step') or 0}/"
                  f"{status.get('phase_steps') or '?'}"
                  if state == "running" and status.get("phase") else None),
    }
