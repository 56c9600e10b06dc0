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
