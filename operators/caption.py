"""``@marlin/marlin/caption``: describe each video as a scene paragraph and time-ranged events.

Writes, per sample: ``marlin_events`` (``TemporalDetections``, one per event, label = description),
``marlin_scene`` (the Scene paragraph) and ``marlin_caption`` (the raw answer). Field names are
parameters.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.contract import CAPTION_PROMPT

from . import forms
from .base import ModelOperator
from .labels import caption_to_detections
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
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Caption")
        forms.field_input(inputs, ctx, "events_field", DEFAULTS["events_field"], "Events field",
                          "TemporalDetections field for the events.")
        forms.field_input(inputs, ctx, "scene_field", DEFAULTS["scene_field"], "Scene field",
                          "String field for the Scene paragraph.")
        forms.field_input(inputs, ctx, "caption_field", DEFAULTS["caption_field"], "Raw caption field",
                          "String field for the model's raw answer.")
        inputs.str("prompt", default=None, label="Prompt", description="Empty = Marlin's canonical caption prompt.")
        self.common_inputs(inputs, "Answers cut at this length are flagged as truncated.")
        return types.Property(inputs, view=types.View(label="Marlin: caption videos"))

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
            sample[field] = caption_to_detections(result, metadata, fingerprint)
            sample[params["scene_field"]] = result["scene"]
            sample[params["caption_field"]] = result["caption"]

        run = ModelRun(OPERATION, field, params["error_field"], params["run_key"], settings, todo, results, write,
                       window_fingerprint=lambda job: fingerprint)
        return execute_model_run(ctx, ctx.target_view(), run, forms.model_loader(ctx, settings))
