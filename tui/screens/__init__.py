"""The modal screens: yes/no, launch overrides, help, any text in a box, the gallery."""
from .confirm import Confirm
from .gallery import Gallery
from .overrides import AskOverrides
from .pager import Help, Pager

__all__ = ["AskOverrides", "Confirm", "Gallery", "Help", "Pager"]
