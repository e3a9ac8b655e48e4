"""The modal screens: yes/no, launch overrides, help, any text in a box, the gallery and
the dataset card."""
from tui.screens.confirm import Confirm
from tui.screens.datacard import DatasetCard
from tui.screens.gallery import Gallery
from tui.screens.overrides import AskOverrides
from tui.screens.pager import Help, Pager

__all__ = ["AskOverrides", "Confirm", "DatasetCard", "Gallery", "Help", "Pager"]
