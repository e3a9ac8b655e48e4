"""The modal screens: yes/no, launch overrides, help, and any text in a box (gallery)."""
from .confirm import Confirm
from .overrides import AskOverrides
from .pager import Help, Pager

__all__ = ["AskOverrides", "Confirm", "Help", "Pager"]
