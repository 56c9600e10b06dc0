"""A search run's progress, reported where its caller can see it (the App, a worker, or nobody).

The search is a generator of :class:`.run.processing.Progress` that returns its summary; these turn it into
App events for an immediate App run (as ``caption``/``find`` do in :mod:`.base`), or run it to its end.
"""

from __future__ import annotations

from typing import Callable, Iterator

from fiftyone.operators.executor import ExecutionResult
from fiftyone.operators.message import GeneratedMessage, MessageType

from .app import run_errors
from .app.session import missing_colours


def drain(steps: Iterator, report: Callable) -> dict:
    """Run a generator of progress to its end, reporting each step; return its value (the summary)."""
    while True:
        try:
            report(next(steps))
        except StopIteration as stop:
            return stop.value


def app_events(ctx, steps: Iterator, title: str, finish: Callable[[dict], Iterator]):
    """Immediate App run: each step as a ``set_progress`` event, then ``finish(summary)``'s events and the result.

    A failure reaches the App as the operator's red error box with the run's one-line reason.
    """
    finished, summary = yield from run_errors.progress_events(ctx, steps, title)
    if not finished:
        return
    colours = missing_colours(ctx.dataset)  # the search field's colour in the open App at once
    if colours is not None:
        yield ctx.trigger("set_color_scheme", colours)
    yield from finish(summary)
    yield GeneratedMessage(MessageType.SUCCESS, cls=ExecutionResult, body=ExecutionResult(result=summary))
