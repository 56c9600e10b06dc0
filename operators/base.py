"""What the operators share: the SDK call, and for those that run Marlin the run itself.

:class:`ModelOperator.execute` is the same for ``caption`` and ``find``: check the parameters
(:mod:`.validation`, before any model loads), open a run record, run :func:`.processing.run_model`
and report progress (App events for an immediate run, ``ctx.set_progress`` for a delegated one). A
subclass says only what differs, through template methods: ``parse``, ``todo``, ``results``,
``updates``, ``output_fields``, ``window_field``, ``window_fingerprint``, ``settings``.
"""

from __future__ import annotations

import dataclasses

import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.executor import ExecutionResult, ExecutionRunState
from fiftyone.operators.message import GeneratedMessage, MessageType

from .adapters import display
from .adapters.seconds import with_seconds_fields
from .app import forms
from .run.models import marlin_for, release_marlin
from .run.processing import Interrupted, run_model
from .run.runs import RunRecord, latest_outcome
from .run.validation import check
from .run.writes import ensure_fields
from .app import run_errors
from .app.session import missing_colours

# the plugin's one JavaScript operator (fiftyone.yml js_bundle): shows the open modal's sample as stored now
REFRESH_MODAL_SAMPLE = "@marlin/marlin/refresh_modal_sample"


class SdkCallable:
    """Lets an operator run from Python: ``foo.get_operator(uri)(dataset_or_view, **params)``."""

    def __call__(self, sample_collection, *, delegate: bool = False, **params):
        """Run on ``sample_collection`` with ``params``; ``delegate=True`` queues it for a worker.

        Returns:
            the run's summary (``done``, ``failed``, ...), or the queued operation's ``{"id": ...}``.
        """
        result = foo.execute_operator(
            self.uri, dict(view=sample_collection.view(), params=params), request_delegation=delegate
        )
        result.raise_exceptions()
        if result.result is None and not delegate:
            # a generator's summary goes to the App only; the run record keeps it for Python callers
            return latest_outcome(sample_collection._root_dataset)
        return result.result


def delegated_stop_requested(ctx) -> bool:
    """Whether this delegated run was marked failed (``fiftyone delegated fail``) while it ran."""
    operation_id = getattr(ctx, "_delegated_operation_id", None)
    if not ctx.delegated or operation_id is None:
        return False
    from fiftyone.operators.delegated import DelegatedOperationService

    try:
        operation = DelegatedOperationService().get(operation_id)
    except Exception:  # noqa: BLE001 - an unreachable service is not a request to stop
        return False
    return operation is not None and operation.run_state == ExecutionRunState.FAILED


class ModelOperator(SdkCallable, foo.Operator):
    """Base of ``caption`` and ``find``; subclasses set ``OPERATION``, ``DEFAULTS``, ``DONE_LABEL``."""

    OPERATION = ""
    DEFAULTS: dict = {}
    DONE_LABEL = "Videos done"

    # ------------------------------------------------------------------ template methods

    def parse(self, ctx):
        """The request's parameters as this operator's params dataclass (after validation)."""
        raise NotImplementedError

    def settings(self, params) -> dict:
        """Everything that determines the answer (recorded, fingerprinted)."""
        raise NotImplementedError

    def output_fields(self, params) -> dict[str, dict]:
        """``{field: add_sample_field kwargs}`` of every field a run may write."""
        raise NotImplementedError

    def todo(self, sample, params):
        """The sample's job payload; None when already done; ``processing.UNTOUCHED`` to keep its labels."""
        raise NotImplementedError

    def results(self, marlin, jobs, params, window_progress, window_store):
        """The engine's iterator of ``(video, result | exception)`` over ``jobs``, in order."""
        raise NotImplementedError

    def updates(self, sample, result, job, params) -> dict:
        """``{field: new value}`` for one result, merged on a fresh read of ``sample`` (may run twice)."""
        raise NotImplementedError

    def window_field(self, params) -> str:
        """The labels field beside which finished windows of long videos wait."""
        raise NotImplementedError

    def window_fingerprint(self, job, params) -> str:
        """The fingerprint finished windows of ``job`` are kept under."""
        raise NotImplementedError

    def load_model(self, params):
        return marlin_for(params)

    # ------------------------------------------------------------------ the run

    def execute(self, ctx):
        """Validate, then run: a generator of App progress events (immediate) or the summary (delegated)."""
        check(self.OPERATION, forms.request_params(ctx), ctx.dataset)
        # secrets travel in the run's params, never on the operator instance the App shares between runs
        params = dataclasses.replace(self.parse(ctx), token=forms.read_token(ctx),
                                     api_key=ctx.secrets.get("MARLIN_API_KEY") or None)
        view = ctx.target_view()
        fields = with_seconds_fields(self.output_fields(params))
        created = [name for name in fields if not ctx.dataset.has_sample_field(name)]
        ensure_fields(ctx.dataset, fields)
        record = RunRecord(view, params.run_key, self.OPERATION, self.settings(params)).start()
        record.annotate(run_errors.record_extras(ctx, self.uri))
        steps = run_errors.drop_unused_fields_on_failure(self._run(ctx, params, view, record), ctx.dataset, created)
        if ctx.delegated:
            return _drain(steps, lambda p: ctx.set_progress(progress=p.fraction, label=p.label))
        return self._events(ctx, steps)

    def _run(self, ctx, params, view, record):
        """The run, then the model let go of (a vllm: server this run started stops, unless kept)."""
        try:
            return (yield from self._recorded_run(ctx, params, view, record))
        finally:
            release_marlin(params)

    def _recorded_run(self, ctx, params, view, record):
        """The run with its record kept: completed, failed (re-raised) or interrupted."""
        outcome = None
        try:
            outcome = yield from run_model(ctx, self, params, view, record, lambda: delegated_stop_requested(ctx))
        except GeneratorExit:
            record.finish("interrupted", {}, "the App stopped listening before the run ended")
            raise
        except Interrupted:
            record.finish("interrupted", {})
            raise
        except BaseException as error:
            record.finish("failed", {}, f"{type(error).__name__}: {error}")
            raise
        failed = outcome["status"] == "failed"
        record.finish(outcome["status"], outcome,
                      f"every sample failed ({outcome['failed']}): {outcome['errors'][0]}" if failed else None)
        display.show_marlin_labels(view, self.window_field(params))
        return outcome

    def _events(self, ctx, steps):
        """Immediate run: progress as App events, then the summary as the operation's result.

        A failure reaches the App as the operator's error (its red box) with the run's one-line reason;
        SDK callers get the exception itself.
        """
        finished, summary = yield from run_errors.progress_events(ctx, steps, self.config.label,
                                                                  raise_outside_app=True)
        if not finished:
            return
        if not ctx.delegated:
            yield ctx.trigger("reload_samples")
            colours = missing_colours(ctx.dataset)
            if colours is not None:
                yield ctx.trigger("set_color_scheme", colours)
            yield ctx.trigger("show_output", {"outputs": self.summary_output(summary).to_json(),
                                                "results": summary})
            yield ctx.trigger("reload_dataset")
            if ctx.current_sample:  # the App refetches an open modal's sample only when asked (app/refresh_modal.js)
                yield ctx.trigger(REFRESH_MODAL_SAMPLE)
        yield GeneratedMessage(MessageType.SUCCESS, cls=ExecutionResult, body=ExecutionResult(result=summary))

    # ------------------------------------------------------------------ form and output

    def resolve_execution_options(self, ctx):
        return forms.execution_options(self, ctx)


    def resolve_output(self, ctx):
        # An immediate run is a generator and shows its summary itself (show_output, in _events); whether
        # the App also hands the prompt the final result is a race, so the prompt shows no second copy.
        return None

    def summary_output(self, summary: dict | None = None) -> types.Property:
        """The run's summary panel (done / skipped / untouched / failed / errors); no Errors heading without
        errors."""
        outputs = types.Object()
        outputs.int("done", label=self.DONE_LABEL)
        outputs.int("skipped", label="Skipped (already done with these settings)")
        outputs.int("untouched", label="Left untouched (labels not made by Marlin; use overwrite)")
        outputs.int("failed", label="Failed (see the error field)")
        if summary is None or summary.get("errors"):
            outputs.list("errors", types.String(), label="Errors")
        return types.Property(outputs, view=types.View(label=self.config.label))


def _drain(steps, report) -> dict:
    """Run a generator of progress to its end, reporting each step; return its value."""
    while True:
        try:
            report(next(steps))
        except StopIteration as stop:
            return stop.value
