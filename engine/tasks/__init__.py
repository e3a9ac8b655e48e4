"""Training objectives, one file each (classify.py, rotation.py, ...), each a `Task`
subclass named TASK_CLASS. registry.TASKS says which exist and which settings each
declares (torch-free); this package holds the implementations, which import torch."""
from __future__ import annotations

import importlib


def build(settings):
    """The task object for a run's settings (imports the task's module, and torch)."""
    module = importlib.import_module(f"{__name__}.{settings.task}")
    return module.TASK_CLASS(settings)
