"""The app's views, in tab order. A new view: its module here and one line in VIEWS."""
from .base import View
from .compare import CompareView
from .experiments import ExperimentsView
from .run import RunView
from .runs import RunsView

VIEWS: tuple[type[View], ...] = (ExperimentsView, RunsView, RunView, CompareView)

__all__ = ["VIEWS", "CompareView", "ExperimentsView", "RunView", "RunsView", "View"]
