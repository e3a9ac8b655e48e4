"""Supervised classification: the dataset's labels are the targets."""
from engine.tasks.base import Task


class Classify(Task):
    pass


TASK_CLASS = Classify
