"""Training objectives. Each task is one file here (classify.py, rotation.py, ...) holding
a `Task` subclass named TASK_CLASS; this registry says which tasks exist and which settings
each declares, without importing torch, so that config validation and the app can read it.

A task's options become settings named `<task>_<option>` (`rotation_mode`), validated like
every other setting. A new task is one file plus one entry in TASKS.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    default: Any
    choices: tuple = ()
    minimum: float | None = None
    help: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    options: dict = field(default_factory=dict)  # option name -> Option
    # Mirroring a test image keeps its label (false for rotation: a flip changes which
    # quarter turn an image shows), so flip test-time augmentation is allowed.
    mirror_keeps_label: bool = True


TASKS = {t.name: t for t in (
    TaskSpec("classify", "supervised classification of the dataset's labels"),
    TaskSpec("rotation", "predict the quarter turn (0/90/180/270) of each image; labels "
             "ignored (Gidaris et al. 2018)",
             {"mode": Option("all4", ("all4", "random"),
                             help="all4: every image in all four rotations per step; "
                                  "random: one random rotation each")},
             mirror_keeps_label=False),
)}


def option_settings() -> dict[str, tuple[str, Option]]:
    """settings key -> (task, option) for every task's options."""
    return {f"{t.name}_{k}": (t.name, o) for t in TASKS.values() for k, o in t.options.items()}


def build(settings):
    """The task object for a run's settings (imports the task's module, and torch)."""
    module = importlib.import_module(f"{__name__}.{settings.task}")
    return module.TASK_CLASS(settings)
