"""What the operators share: the SDK call, and for those that run Marlin the common form and result panel."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import forms


class SdkCallable:
    """Lets an operator run from Python: ``foo.get_operator(uri)(dataset_or_view, **params)``."""

    def __call__(self, sample_collection, *, delegate: bool = False, **params):
        """Run on ``sample_collection`` with ``params``; ``delegate=True`` queues it for a worker."""
        return foo.execute_operator(
            self.uri, dict(view=sample_collection.view(), params=params), request_delegation=delegate
        )


class ModelOperator(SdkCallable, foo.Operator):
    """Base of ``caption`` and ``find``; subclasses set ``DEFAULTS``, ``DONE_LABEL`` and their own inputs."""

    DEFAULTS: dict = {}
    DONE_LABEL = "Videos done"

    def resolve_execution_options(self, ctx):
        return forms.execution_options(self, ctx)

    def common_inputs(self, inputs: types.Object, max_new_tokens_description: str) -> None:
        """Model, bookkeeping, decoding and preprocessing inputs, after the operator's own."""
        forms.model_inputs(inputs)
        inputs.str("error_field", default=self.DEFAULTS["error_field"], label="Error field",
                   description="Per-sample error messages (bad file, failed generation) go here.")
        inputs.str("run_key", default=self.DEFAULTS["run_key"], label="Run key",
                   description="Name of the FiftyOne run that records the settings (list_runs / get_run_info).")
        inputs.int("max_new_tokens", default=self.DEFAULTS["max_new_tokens"], label="Max new tokens",
                   description=max_new_tokens_description)
        forms.sampling_inputs(inputs)
        forms.overwrite_input(inputs)

    def params(self, ctx) -> dict:
        """The request's parameters over the defaults (None = not given)."""
        return forms.read_params(ctx, self.DEFAULTS)

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("done", label=self.DONE_LABEL)
        outputs.int("skipped", label="Skipped (already done with these settings)")
        outputs.int("failed", label="Failed (see the error field)")
        outputs.list("errors", types.String(), label="Errors")
        return types.Property(outputs, view=types.View(label=self.config.label))
