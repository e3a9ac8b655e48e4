"""The modal screens: yes/no, launch overrides, help, any text in a box, the gallery and
the dataset card."""
from .confirm import Confirm
from .datacard import DatasetCard
from .gallery import Gallery
from .overrides import AskOverrides
from .pager import Help, Pager

__all__ = ["AskOverrides", "Confirm", "DatasetCard", "Gallery", "Help", "Pager"]
