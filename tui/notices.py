"""How the app reports what went wrong: a RotundaError as the very line the CLI prints
after "error: ", an OSError after what was being done. Anything else is a bug and is
not caught."""
from __future__ import annotations

from contextlib import contextmanager

from engine.core.errors import RotundaError

USER_ERRORS = (RotundaError, OSError)


def error_line(doing: str, exc: Exception) -> str:
    return str(exc) if isinstance(exc, RotundaError) else f"{doing}: {exc}"


@contextmanager
def reported(node, doing: str):
    """Runs the block; a user error ends it and shows as an error notification."""
    try:
        yield
    except USER_ERRORS as exc:
        node.notify(error_line(doing, exc), severity="error", timeout=8)
