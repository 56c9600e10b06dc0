"""``@marlin/marlin/find``: when does each described event happen in each video.

Writes ``marlin_find`` (``TemporalDetections``, one per query found; label = the query, confidence,
raw answer and ``format_ok`` as attributes) and ``marlin_find_not_found`` (the queries Marlin did not
locate, a list the App can filter on). A new query is added; a query asked again with other settings
(or ``overwrite``) replaces only its own detection.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.contract import FIND_PROMPT_TEMPLATE
from marlin_core.queries import parse_queries

from .app import forms, placements, run_errors
from .run import scheduling
from .base import ModelOperator
from .adapters.labels import find_to_detection, marlin_owns
from .run.params import FindParams
from .run.processing import UNTOUCHED, partial_field
from .run.runs import settings_fingerprint

OPERATION = "find"
DEFAULTS = {
    "find_field": "marlin_find",
    "error_field": "marlin_error",
    "run_key": "marlin_find",
    "max_new_tokens": 64,
}


def not_found_field(find_field: str) -> str:
    return f"{find_field}_not_found"


def searched_queries(sample, field: str) -> dict[str, str]:
    """``{query: settings fingerprint}`` of the queries already answered on this sample."""
    labels = sample[field] if sample.has_field(field) else None
    pairs = getattr(labels, "searched", None) if labels is not None else None
    return {query: fingerprint for query, fingerprint in pairs or []}


def merge_answers(sample, answers: list[dict], params: FindParams, metadata, fingerprint: str) -> dict:
    """``{find field, not-found field}`` after adding ``answers`` to what the sample holds now.

    Each answered query replaces only Marlin's earlier answer to that query, and only when nobody changed
    it (:func:`.adapters.labels.marlin_owns`); the other detections (other queries, other runs' answers
    written meanwhile, labels someone made or corrected) keep their ids. A query already answered with the
    same settings by a concurrent run keeps that answer (no duplicate); a query someone labelled by hand
    is not asked again unless ``overwrite``, and even then their label stays beside Marlin's.
    """
    labels = sample[params.find_field] if sample.has_field(params.find_field) else None
    existing = list(labels.detections) if labels is not None else []
    searched = searched_queries(sample, params.find_field)
    hand_made = {d.label for d in existing if not marlin_owns(d)}
    asked = [a for a in answers
             if params.overwrite or (searched.get(a["query"]) != fingerprint and a["query"] not in hand_made)]
    if not asked:
        return {}
    queries = {a["query"] for a in asked}
    kept = [d for d in existing if d.label not in queries or not marlin_owns(d)]
    previous_missing = sample[params.not_found_field] if sample.has_field(params.not_found_field) else None
    not_found = [q for q in previous_missing or [] if q not in queries]
    for answer in asked:
        detection, _ = find_to_detection(answer, metadata, fingerprint)
        searched[answer["query"]] = fingerprint
        if detection is None:
            not_found.append(answer["query"])
        else:
            kept.append(detection)
    labels = labels if labels is not None else fo.TemporalDetections()
    labels.detections = kept
    # stored as [query, fingerprint] pairs: queries may hold "." which MongoDB keys cannot
    labels.searched = [[q, f] for q, f in searched.items()]
    return {params.find_field: labels, params.not_found_field: not_found}


class FindEvents(ModelOperator):
    OPERATION = OPERATION
    DEFAULTS = DEFAULTS
    DONE_LABEL = "Videos searched"

    @property
    def config(self):
        return foo.OperatorConfig(
            name="find",
            label="Marlin: find events in videos",
            description="Locate when each described event happens (TemporalDetections labelled with the query)",
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        params = forms.read_params(ctx, DEFAULTS)
        problems = forms.form_problems(OPERATION, params, ctx.dataset)
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Search")
        run_errors.last_failure_notice(inputs, ctx.dataset, OPERATION)
        forms.model_input(inputs, ctx)
        forms.queries_input(inputs, ctx)
        forms.run_inputs(inputs)
        forms.existing_fields_notice(inputs, ctx.dataset, [params["find_field"], not_found_field(params["find_field"])])
        scheduling.estimate_notice(inputs, ctx, params)
        advanced = forms.advanced_section(inputs, expanded=forms.opens_advanced(problems))
        forms.field_name_input(advanced, "find_field", DEFAULTS["find_field"], "Results field",
                               "TemporalDetections field, one detection per query found; the queries not found "
                               "go to <field>_not_found.")
        forms.model_advanced_inputs(advanced, DEFAULTS, "A find answer is about 12 tokens.")
        forms.mark_invalid(inputs, problems)
        return types.Property(inputs, view=types.View(label="Marlin: find events"))

    def resolve_placement(self, ctx):
        return placements.button(self, ctx, label="Find events with Marlin", icon="manage_search")

    # ------------------------------------------------------------------ template methods

    def parse(self, ctx) -> FindParams:
        params = forms.request_params(ctx)
        return FindParams.read(params, DEFAULTS, parse_queries(params.get("queries")))

    def settings(self, params: FindParams) -> dict:
        return dict(params.settings(FIND_PROMPT_TEMPLATE), queries=list(params.queries))

    def _fingerprint(self, params: FindParams) -> str:
        """Per-query settings: the prompt template, not the list of queries asked together."""
        return settings_fingerprint(params.settings(FIND_PROMPT_TEMPLATE))

    def output_fields(self, params: FindParams) -> dict[str, dict]:
        return {
            params.find_field: dict(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections),
            params.not_found_field: dict(ftype=fo.ListField, subfield=fo.StringField),
            params.error_field: dict(ftype=fo.StringField),
            partial_field(params.find_field): dict(ftype=fo.DictField),
        }

    def todo(self, sample, params: FindParams):
        """The queries still to ask; None when all are done; ``UNTOUCHED`` when hand-made labels block all."""
        searched = searched_queries(sample, params.find_field)
        labels = sample[params.find_field] if sample.has_field(params.find_field) else None
        hand_made = {d.label for d in (labels.detections if labels is not None else []) if not marlin_owns(d)}
        fingerprint = self._fingerprint(params)
        if params.overwrite:
            return list(params.queries)
        remaining = [q for q in params.queries if searched.get(q) != fingerprint]
        allowed = [q for q in remaining if q not in hand_made]
        if allowed:
            return allowed
        return UNTOUCHED if remaining else None

    def results(self, marlin, jobs, params: FindParams, window_progress, window_store):
        from marlin_core import WorkItem

        return marlin.iter_finds(
            [WorkItem(job.sample_id, job.filepath, tuple(job.payload)) for job in jobs],
            window_progress=window_progress,
            window_store=window_store,
            **params.engine_kwargs(),
        )

    def updates(self, sample, answers, job, params: FindParams) -> dict:
        return merge_answers(sample, answers, params, job.metadata, self._fingerprint(params))

    def window_field(self, params: FindParams) -> str:
        return params.find_field

    def window_fingerprint(self, job, params: FindParams) -> str:
        return settings_fingerprint([self._fingerprint(params), job.payload])

    def __call__(self, sample_collection, queries, *, delegate: bool = False, **params):
        """Run from Python: ``foo.get_operator("@marlin/marlin/find")(dataset, ["a dog jumps"])``."""
        queries = [queries] if isinstance(queries, str) else list(queries)  # one string is one query
        return super().__call__(sample_collection, delegate=delegate, queries=queries, **params)
