"""``@marlin/marlin/evaluate``: score Marlin's labels against ground truth (see :mod:`.evaluation`)."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from .base import SdkCallable
from .evaluation import evaluate, format_summary
from .params import given
from .validation import check

DEFAULTS = {"pred_field": "marlin_events", "gt_field": "ground_truth", "mode": "events",
            "eval_key": "marlin_eval", "iou": 0.5}


class EvaluateMarlin(SdkCallable, foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate",
            label="Marlin: evaluate against ground truth",
            description="tp/fp/fn per label, IoU per sample, and the field's standard metrics",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Evaluate")
        schema = ctx.dataset.get_field_schema(embedded_doc_type=fo.TemporalDetections) if ctx.dataset else {}
        fields = sorted(schema)
        for name, label, description in (
            ("pred_field", "Predictions", "TemporalDetections written by Marlin (caption events or find spans)."),
            ("gt_field", "Ground truth", "TemporalDetections with the reference segments."),
        ):
            if fields:
                choices = types.Dropdown(label=label)
                for field in fields:
                    choices.add_choice(field, label=field)
                inputs.enum(name, choices.values(), default=DEFAULTS[name] if DEFAULTS[name] in fields else None,
                            view=choices, label=label, description=description)
            else:
                inputs.str(name, default=DEFAULTS[name], label=label, description=description)
        mode = types.RadioGroup()
        mode.add_choice("events", label="events", description="caption events vs segments, labels ignored")
        mode.add_choice("grounding", label="grounding", description="find spans vs spans, paired by query")
        inputs.enum("mode", mode.values(), default=DEFAULTS["mode"], view=mode, label="Mode")
        inputs.str("eval_key", default=DEFAULTS["eval_key"], label="Evaluation key",
                   description="Name of the evaluation run; an existing one with this key is replaced.")
        inputs.float("iou", default=DEFAULTS["iou"], label="tIoU threshold",
                     description="Minimum temporal IoU for a prediction to match (tp).")
        if ctx.dataset is not None and ctx.params.get("eval_key", DEFAULTS["eval_key"]) in ctx.dataset.list_evaluations():
            inputs.view("exists", types.Warning(label="This evaluation key exists and will be overwritten."))
        return types.Property(inputs, view=types.View(label="Marlin: evaluate"))

    def execute(self, ctx):
        check("evaluate", ctx.params, ctx.dataset)
        params = given(ctx.params, DEFAULTS)
        summary = evaluate(ctx.target_view(), params["pred_field"], params["gt_field"], mode=params["mode"],
                           eval_key=params["eval_key"], iou=float(params["iou"]))
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return dict(summary, table=format_summary(summary))

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("table", label="Results", view=types.CodeView(language="text"))
        outputs.list("views", types.String(), label="Saved views to review (Load view in the App)")
        return types.Property(outputs, view=types.View(label="Marlin evaluation"))
