"""How the app runs engine work and reports what went wrong: a RotundaError as the very
line the CLI prints after "error: ", an OSError after what was being done. Anything else
is a bug and is not caught. Engine work that can wait (a launch, a cancel, an sbatch or
scancel with its 30 s timeout, reading two runs) runs in a worker thread, never on the
event loop."""
from __future__ import annotations

from collections.abc import Callable
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


def in_background(node, doing: str, work: Callable[[], object],
                  then: Callable[[object], None] | None = None) -> None:
    """Run `work` in a worker thread; on the event loop, `then(result)` after it, or the
    user error as a notification. The UI keeps answering meanwhile (a slow cluster)."""
    app = node.app

    def run() -> None:
        try:
            result = work()
        except USER_ERRORS as exc:
            app.call_from_thread(app.notify, error_line(doing, exc), severity="error",
                                 timeout=8)
            return
        if then is not None:
            app.call_from_thread(then, result)

    app.run_worker(run, thread=True, group="engine", exit_on_error=False)
