"""A failed run tells the App why, and leaves no empty fields behind.

FiftyOne streams an immediate generator run to the App one JSON line per message; an exception in
the middle only cuts the stream, and the prompt stays at its last progress for good. The App reads a
top-level ``error`` on any line as the operation's error and shows it in the operator's red error
box, so a failure is sent as such a line (:class:`ErrorMessage`). SDK callers
(``execute_operator`` exhausts the generator itself) still get the exception.
"""

from __future__ import annotations

import fiftyone.operators.types as types
from fiftyone.operators.message import GeneratedMessage, MessageType

__all__ = ["ErrorMessage", "drop_unused_fields_on_failure", "error_output", "one_line", "progress_events",
           "record_extras", "streamed_to_app"]

# Parameters never copied into a run record.
SECRET_PARAMS = frozenset({"token", "api_key", "hf_token"})


class ErrorMessage(GeneratedMessage):
    """One line the App reads as the operation's error (``{"error": reason, ...}``)."""

    def __init__(self, reason: str):
        super().__init__(MessageType.ERROR)
        self.reason = reason

    def to_json(self) -> dict:
        return {"type": str(self.type), "cls": "ExecutionError", "body": None,
                "error": self.reason, "error_message": self.reason}


def error_output(title: str, reason: str) -> dict:
    """``show_output`` parameters for the operator's red error box with ``reason`` in the prompt."""
    outputs = types.Object()
    outputs.view("run_failed", types.Error(label="The run failed", description=reason))
    return {"outputs": types.Property(outputs, view=types.View(label=title)).to_json(), "results": {}}


def failure_events(ctx, title: str, error: BaseException):
    """The App's messages for a run that failed: a "failed: reason" progress line, the red error box, and the
    operation's error (what every immediate run streams when it fails)."""
    reason = one_line(error)
    yield ctx.trigger("set_progress", dict(progress=0, label=f"failed: {reason}"))
    yield ctx.trigger("show_output", error_output(title, reason))
    yield ErrorMessage(reason)


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line (the first line of the message)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def progress_events(ctx, steps, title: str, *, raise_outside_app: bool = False):
    """An immediate run's steps as ``set_progress`` events (``yield from`` it); its value is ``(True, summary)``
    when the steps finish, ``(False, None)`` once a failure's App messages are sent (:func:`failure_events`).

    ``raise_outside_app``: re-raise the failure when no App listens (an SDK ``execute_operator`` call).
    """
    try:
        while True:
            progress = next(steps)
            yield ctx.trigger("set_progress", dict(progress=progress.fraction, label=progress.label))
    except StopIteration as stop:
        return True, stop.value
    except Exception as error:  # noqa: BLE001 - shown in the App; re-raised for SDK callers when asked
        if raise_outside_app and not streamed_to_app(ctx):
            raise
        yield from failure_events(ctx, title, error)
        return False, None


def streamed_to_app(ctx) -> bool:
    """Whether this immediate run streams to the App (whose request names the operator and the
    current sample) rather than being exhausted by an SDK ``execute_operator`` call."""
    request = getattr(ctx, "request_params", None) or {}
    return not ctx.delegated and "operator_uri" in request and "current_sample" in request


def record_extras(ctx, operator_uri: str) -> dict:
    """What a run record keeps so the runs panel can re-run or cancel it: the operator, its parameters
    (without secrets) and, for a scheduled run, the delegated operation's id."""
    params = {key: value for key, value in (ctx.params or {}).items() if key not in SECRET_PARAMS}
    operation_id = getattr(ctx, "_delegated_operation_id", None) if ctx.delegated else None
    return {"operator_uri": operator_uri, "params": params,
            "delegated_operation_id": str(operation_id) if operation_id is not None else None}


def drop_unused_fields_on_failure(steps, dataset, created: list[str]):
    """Run ``steps`` (a generator); when it fails, delete the fields in ``created`` (made for this run)
    that hold no value on any sample, so a failed run leaves the dataset's schema as it was."""
    try:
        return (yield from steps)
    except BaseException:
        for name in created:
            try:
                if dataset.has_sample_field(name) and dataset.count(name) == 0:
                    dataset.delete_sample_field(name)
            except Exception:  # noqa: BLE001 - tidying must not hide the run's own error
                continue
        raise


def last_failure_notice(inputs: types.Object, dataset, operation: str) -> None:
    """The operator's red box in its form when this dataset's latest ``operation`` run failed (a scheduled
    run included, which otherwise fails out of sight on its worker)."""
    if dataset is None:
        return
    from ..run.run_list import list_runs

    try:
        latest = next((row for row in list_runs(dataset) if row.operation == operation), None)
    except Exception:  # noqa: BLE001 - the form must open even when the records cannot be read
        return
    if latest is None or latest.status != "failed":
        return
    when = latest.started_at.strftime("%Y-%m-%d %H:%M UTC") if latest.started_at else "recently"
    kind = "scheduled " if latest.scheduled else ""
    inputs.view("last_run_failed", types.Error(
        label=f"The last {kind}{operation} run ({when}) failed",
        description=f"{latest.reason or 'no reason recorded'} (the Marlin runs panel lists every run)"))
