"""Errors a user can cause, each rendered as one line and carrying its exit code.

The CLI catches RotundaError once; the app shows the same line. Anything else that
escapes is a bug, not a message.
"""
from __future__ import annotations


def one_line(text: str) -> str:
    """Control characters a user typed (a newline in --set, a tab in a file name) shown
    escaped, so that a message stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class RotundaError(Exception):
    """A mistake or missing piece the user can act on; str() is the whole message, on
    one line."""

    exit_code = 2

    def __str__(self) -> str:
        return one_line(super().__str__())


class ConfigError(RotundaError):
    """A mistake in a configuration, rendered as one actionable line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message, self.file, self.line = message, file, line
        where = f"{file}:{line}" if file and line else (file or "")
        super().__init__(f"{where}: {message}" if where else message)


class RunError(RotundaError):
    """A run that cannot start, be found, resumed or cancelled."""


class DataError(RotundaError):
    """A dataset that cannot be found or read; the message says where we looked."""


class InitError(RotundaError):
    """A starting point (checkpoint or weights) that cannot be loaded into the model."""


class DeviceError(RotundaError):
    """The requested device is not there."""
