"""``@marlin/marlin/evaluate``: score Marlin's labels against ground truth (see :mod:`.evaluation`)."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from .app import forms
from .base import SdkCallable
from .adapters.evaluation import evaluate, format_summary
from .open_view import view_buttons
from .run.params import given
from .review import KINDS as REVIEW_KINDS
from .run.runs import RunRecord
from .run.validation import check

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
        forms.mark_invalid(inputs, forms.form_problems("evaluate", given(ctx.params, DEFAULTS), ctx.dataset))
        return types.Property(inputs, view=types.View(label="Marlin: evaluate"))

    def execute(self, ctx):
        check("evaluate", ctx.params, ctx.dataset)
        params = given(ctx.params, DEFAULTS)
        view = ctx.target_view()
        settings = {name: params[name] for name in ("pred_field", "gt_field", "mode", "eval_key", "iou")}
        record = RunRecord(view, f"{params['eval_key']}_marlin", "evaluate", settings).start()
        try:
            summary = evaluate(view, params["pred_field"], params["gt_field"], mode=params["mode"],
                               eval_key=params["eval_key"], iou=float(params["iou"]))
        except BaseException as error:
            record.finish("failed", {}, f"{type(error).__name__}: {error}", register=False)
            raise
        record.finish("completed", {"samples": summary["samples"], "metrics": summary["metrics"]}, register=False)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return dict(summary, table=format_summary(summary))

    def resolve_output(self, ctx):
        results = ctx.results or {}
        outputs = types.Object()
        # a markdown table: the App renders it without network (CodeView loads its editor from a CDN)
        outputs.md(metrics_markdown(results), name="metrics_table")
        names = list(results.get("views") or [])
        view_buttons(outputs, names, {name: text for name in names for kind, text in REVIEW_KINDS.items()
                                      if name.endswith(f"_{kind}")})
        return types.Property(outputs, view=types.View(label="Marlin evaluation"))


def metrics_markdown(summary: dict) -> str:
    """The evaluation's aggregate metrics as a markdown table (percentages, 2 decimals)."""
    if not summary.get("metrics"):
        return "No metrics: no sample in the target had ground truth."
    lines = [f"**{summary.get('eval_key', '')}** ({summary.get('mode', '')}, {summary.get('samples', 0)} samples)",
             "", "| Metric | Value |", "|:--|--:|"]
    for name, value in summary["metrics"].items():
        lines.append(f"| {name} | {value:.2f} |" if isinstance(value, float) else f"| {name} | {value} |")
    return "\n".join(lines)
