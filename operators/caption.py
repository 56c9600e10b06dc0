"""``@marlin/marlin/caption``: describe each video as a scene paragraph and time-ranged events.

Writes, per sample: ``marlin_events`` (``TemporalDetections``, one per event, label = description),
``marlin_scene`` (the Scene paragraph) and ``marlin_caption`` (the raw answer). Field names are
parameters.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.contract import CAPTION_PROMPT

from . import display, forms, placements, scheduling
from .base import ModelOperator
from .labels import events_to_detections
from .processing import ModelRun, execute_model_run
from .runs import settings_fingerprint

OPERATION = "caption"
DEFAULTS = {
    "events_field": "marlin_events",
    "scene_field": "marlin_scene",
    "caption_field": "marlin_caption",
    "error_field": "marlin_error",
    "run_key": "marlin_caption",
    "max_new_tokens": 2048,
}
# The output fields' inputs: parameter -> (label, description).
OUTPUT_FIELDS = {
    "events_field": ("Events field", "TemporalDetections field for the events."),
    "scene_field": ("Scene field", "String field for the Scene paragraph."),
    "caption_field": ("Raw caption field", "String field for the model's raw answer."),
}


class CaptionVideos(ModelOperator):
    DEFAULTS = DEFAULTS
    DONE_LABEL = "Videos captioned"

    @property
    def config(self):
        return foo.OperatorConfig(
            name="caption",
            label="Marlin: caption videos",
            description="Describe each video and list its time-ranged events as TemporalDetections",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        params = self.params(ctx)
        problems = forms.form_problems(OPERATION, params, ctx.dataset)
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Caption")
        forms.model_input(inputs, ctx)
        forms.run_inputs(inputs)
        forms.existing_fields_notice(inputs, ctx.dataset, [params[name] for name in OUTPUT_FIELDS])
        scheduling.estimate_notice(inputs, ctx, params)
        advanced = forms.advanced_section(inputs, expanded=forms.opens_advanced(problems))
        for name, (label, description) in OUTPUT_FIELDS.items():
            forms.field_name_input(advanced, name, DEFAULTS[name], label, description)
        advanced.str("prompt", default=None, label="Prompt", description="Empty = Marlin's canonical caption prompt.")
        forms.model_advanced_inputs(advanced, DEFAULTS, "Answers cut at this length are flagged as truncated.")
        forms.mark_invalid(inputs, problems)
        return types.Property(inputs, view=types.View(label="Marlin: caption videos"))

    def resolve_placement(self, ctx):
        return placements.button(self, ctx, label="Caption with Marlin", icon="subtitles")

    def execute(self, ctx):
        params = self.params(ctx)
        settings = forms.model_settings(ctx, params, params.get("prompt") or CAPTION_PROMPT)
        fingerprint = settings_fingerprint(settings)
        field = params["events_field"]

        def todo(sample):
            labels = sample[field] if sample.has_field(field) else None
            done = labels is not None and getattr(labels, "marlin_settings", None) == fingerprint
            return None if done and not params.get("overwrite") else True

        def results(marlin, jobs, window_progress, window_store):
            return marlin.iter_captions(
                [job.filepath for job in jobs],
                batch_size=max(1, int(params.get("batch_size") or 1)),
                max_new_tokens=settings["max_new_tokens"],
                prompt=params.get("prompt"),
                window_s=settings["window_s"],
                window_progress=window_progress,
                window_store=window_store,
                **settings["sampling"],
            )

        def write(sample, result, metadata, job):
            detections, changes = events_to_detections(result["events"], metadata, fingerprint)
            detections.format_ok = bool(result.get("format_ok", True))
            detections.truncated = bool(result.get("truncated", False))
            if changes:
                detections.sanitized = changes
            sample[field] = detections
            sample[params["scene_field"]] = result["scene"]
            sample[params["caption_field"]] = result["caption"]

        run = ModelRun(OPERATION, field, params["error_field"], params["run_key"], settings, todo, results, write,
                       window_fingerprint=lambda job: fingerprint)
        outcome = execute_model_run(ctx, ctx.target_view(), run, forms.model_loader(ctx, settings))
        display.show_marlin_labels(ctx.target_view(), field, ctx)
        return outcome
