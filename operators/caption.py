"""``@marlin/marlin/caption``: describe each video as a scene paragraph and time-ranged events.

Writes, per sample: ``marlin_events`` (``TemporalDetections``, one per event, label = description),
``marlin_scene`` (the Scene paragraph) and ``marlin_caption`` (the raw answer). Field names are
parameters.

A rerun replaces only what Marlin wrote and nobody changed (:func:`.adapters.labels.marlin_owns`): events
the user added or corrected, and a scene or caption text the user edited, stay, with or without
``overwrite``. ``overwrite`` redoes samples already done with the same settings, and lets a run add its
labels to a field holding only someone else's (refused otherwise, :mod:`.run.validation`).
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.contract import CAPTION_PROMPT

from .app import forms, placements, run_errors
from .run import scheduling
from .base import ModelOperator
from .adapters.labels import TEXT_HASHES, caption_to_detections, is_marlin_label, owns_text, user_detections
from .run.params import CaptionParams
from .run.processing import UNTOUCHED, partial_field
from .run.runs import settings_fingerprint

OPERATION = "caption"
# Set on events written without their scene and caption (the zoo model's ``output="labels"``).
EVENTS_ONLY = "marlin_events_only"
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
    OPERATION = OPERATION
    DEFAULTS = DEFAULTS
    DONE_LABEL = "Videos captioned"

    @property
    def config(self):
        return foo.OperatorConfig(
            name="caption",
            label="Marlin: caption videos",
            description="Describe each video and list its time-ranged events as TemporalDetections",
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        params = forms.read_params(ctx, DEFAULTS)
        problems = forms.form_problems(OPERATION, params, ctx.dataset)
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Caption")
        run_errors.last_failure_notice(inputs, ctx.dataset, OPERATION)
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

    # ------------------------------------------------------------------ template methods

    def parse(self, ctx) -> CaptionParams:
        return CaptionParams.read(forms.request_params(ctx), DEFAULTS)

    def settings(self, params: CaptionParams) -> dict:
        return params.settings(params.prompt or CAPTION_PROMPT)

    def output_fields(self, params: CaptionParams) -> dict[str, dict]:
        return {
            params.events_field: dict(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections),
            params.scene_field: dict(ftype=fo.StringField),
            params.caption_field: dict(ftype=fo.StringField),
            params.error_field: dict(ftype=fo.StringField),
            partial_field(params.events_field): dict(ftype=fo.DictField),
        }

    def todo(self, sample, params: CaptionParams):
        """Skip samples done with these settings; keep samples whose fields hold someone else's values.

        The scene and raw-caption strings belong to the events labels beside them: they are Marlin's when
        the events field is (it carries the fingerprint), or when all three fields are empty.
        """
        events = sample[params.events_field] if sample.has_field(params.events_field) else None
        if is_marlin_label(events):
            # ``apply_model(output="labels")`` writes the events only: not a whole caption
            done = events.marlin_settings == settings_fingerprint(self.settings(params)) \
                and not (events.has_field(EVENTS_ONLY) and events[EVENTS_ONLY])
            return None if done and not params.overwrite else True
        occupied = any(sample.has_field(name) and sample[name] not in (None, "") for name in params.label_fields)
        return UNTOUCHED if occupied and not params.overwrite else True

    def results(self, marlin, jobs, params: CaptionParams, window_progress, window_store):
        from marlin_core import WorkItem

        return marlin.iter_captions(
            [WorkItem(job.sample_id, job.filepath) for job in jobs],
            prompt=params.prompt,
            window_progress=window_progress,
            window_store=window_store,
            **params.engine_kwargs(),
        )

    def updates(self, sample, result, job, params: CaptionParams) -> dict:
        if self.todo(sample, params) is UNTOUCHED:
            return {}  # someone wrote their own labels there while the model ran: theirs stay
        detections = caption_to_detections(result, job.metadata, settings_fingerprint(self.settings(params)))
        events = sample[params.events_field] if sample.has_field(params.events_field) else None
        detections.detections = user_detections(events) + list(detections.detections)
        updates = {params.events_field: detections}
        for kind, name in (("scene", params.scene_field), ("caption", params.caption_field)):
            current = sample[name] if sample.has_field(name) else None
            if owns_text(events if is_marlin_label(events) else None, kind, current):
                updates[name] = result[kind]
            else:  # the user's text stays; no hash, so it stays the user's on later runs too
                detections.set_field(TEXT_HASHES[kind], None)
        return updates

    def window_field(self, params: CaptionParams) -> str:
        return params.events_field

    def window_fingerprint(self, job, params: CaptionParams) -> str:
        return settings_fingerprint(self.settings(params))
