"""The app's views, in tab order. A new view: its module here and one line in VIEWS."""
from tui.views.base import View
from tui.views.compare import CompareView
from tui.views.experiments import ExperimentsView
from tui.views.run import RunView
from tui.views.runs import RunsView
from tui.views.workspace import WorkspaceView

VIEWS: tuple[type[View], ...] = (ExperimentsView, RunsView, RunView, CompareView,
                                 WorkspaceView)

__all__ = ["VIEWS", "CompareView", "ExperimentsView", "RunView", "RunsView", "View",
           "WorkspaceView"]
