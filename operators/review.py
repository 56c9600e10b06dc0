"""``@marlin/marlin/review_errors``: open the mistakes of an evaluation in the App."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

KINDS = {
    "worst": "Worst samples first (lowest IoU)",
    "false_positives": "Clips of predictions with no matching ground truth",
    "misses": "Clips of ground truth Marlin did not find",
}


class ReviewErrors(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="review_errors", label="Marlin: review errors", dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        keys = [k[: -len("_marlin")] for k in ctx.dataset.list_runs() if k.endswith("_marlin")] if ctx.dataset else []
        if not keys:
            inputs.view("none", types.Warning(label="Run @marlin/marlin/evaluate first."))
            return types.Property(inputs)
        inputs.enum("eval_key", keys, default=keys[0], label="Evaluation")
        kind = types.RadioGroup()
        for name, description in KINDS.items():
            kind.add_choice(name, label=description)
        inputs.enum("kind", kind.values(), default="worst", view=kind, label="Show")
        return types.Property(inputs, view=types.View(label="Marlin: review errors"))

    def execute(self, ctx):
        eval_key = ctx.params.get("eval_key", "marlin_eval")
        kind = ctx.params.get("kind", "worst")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        name = f"{eval_key}_{kind}"
        if not ctx.dataset.has_saved_view(name):
            raise ValueError(f"no saved view {name!r}: run @marlin/marlin/evaluate with eval_key {eval_key!r} first")
        # by name, so the App's view selector shows the saved view (not "Unsaved view")
        ctx.ops.set_view(name=name)
        return {"view": name}
