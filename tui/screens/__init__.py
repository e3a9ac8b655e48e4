"""The modal screens: yes/no, a line of text (overrides, tags, a note), help, any text in
a box, the gallery and the dataset card."""
from tui.screens.ask import AskText
from tui.screens.confirm import Confirm
from tui.screens.datacard import DatasetCard
from tui.screens.gallery import Gallery
from tui.screens.pager import Help, Pager

__all__ = ["AskText", "Confirm", "DatasetCard", "Gallery", "Help", "Pager"]
