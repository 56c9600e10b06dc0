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


# What each metric counts, in the table beside its value (three precisions read alike otherwise).
METRIC_MEANINGS = {
    "fiftyone_precision": "FiftyOne's matcher: % of predicted events matched one-to-one to a ground-truth span "
                          "(tIoU ≥ threshold), over all samples pooled",
    "fiftyone_recall": "FiftyOne's matcher: % of ground-truth spans matched one-to-one by a prediction, pooled",
    "fiftyone_f1": "FiftyOne's matcher: harmonic mean of the two rows above",
    "mAP": "FiftyOne's mean average precision over the tIoU thresholds (ranks predictions by confidence)",
    "precision": "ActivityNet dense captioning: % of a video's predictions with tIoU > t to some ground-truth "
                 "span, averaged over videos and thresholds t",
    "recall": "ActivityNet dense captioning: % of a video's ground-truth spans with tIoU > t to some "
              "prediction, averaged the same way",
    "f1": "ActivityNet dense captioning: mean of per-video F1 (not the harmonic mean of the two rows above)",
    "R1@0.3": "% of queries whose predicted span has tIoU ≥ 0.3 with the ground truth",
    "R1@0.5": "% of queries whose predicted span has tIoU ≥ 0.5 with the ground truth",
    "R1@0.7": "% of queries whose predicted span has tIoU ≥ 0.7 with the ground truth",
    "mIoU": "mean tIoU over queries (a query with no prediction counts 0)",
    "n": "queries evaluated",
}


def metrics_markdown(summary: dict) -> str:
    """The evaluation's aggregate metrics as one markdown table: value and what it counts (percentages)."""
    without = summary.get("samples_without_ground_truth")
    if not summary.get("metrics"):
        return "No metrics: no sample in the target had ground truth."
    lines = [f"**{summary.get('eval_key', '')}** ({summary.get('mode', '')}, {summary.get('samples', 0)} samples "
             "with ground truth)", "", "| Metric | Value | What it counts |", "|:--|--:|:--|"]
    for name, value in summary["metrics"].items():
        shown = f"{value:.2f}" if isinstance(value, float) else f"{value}"
        lines.append(f"| {name} | {shown} | {METRIC_MEANINGS.get(name, '')} |")
    if without is not None:
        lines.append(f"| samples without ground truth | {without} | not evaluated (their predictions count in "
                     "no row above) |")
    return "\n".join(lines)
