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

from . import display, forms, placements, scheduling
from .base import ModelOperator
from .labels import find_to_detection
from .processing import ModelRun, execute_model_run
from .runs import settings_fingerprint

OPERATION = "find"
DEFAULTS = {
    "find_field": "marlin_find",
    "error_field": "marlin_error",
    "run_key": "marlin_find",
    "max_new_tokens": 64,
}


def parse_queries(value) -> list[str]:
    """Queries from a list (or text with one query per line); whitespace tidied, blanks and duplicates dropped."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").splitlines()
    queries = []
    for item in items:
        query = " ".join(str(item).split())
        if query and query not in queries:
            queries.append(query)
    return queries


def not_found_field(find_field: str) -> str:
    return f"{find_field}_not_found"


def searched_queries(sample, field: str) -> dict[str, str]:
    """``{query: settings fingerprint}`` of the queries already answered on this sample."""
    labels = sample[field] if sample.has_field(field) else None
    pairs = getattr(labels, "searched", None) if labels is not None else None
    return {query: fingerprint for query, fingerprint in pairs or []}


def write_answers(sample, answers: list[dict], metadata, field: str, missing_field: str, fingerprint: str) -> None:
    """Add each answered query to the sample's labels, replacing only that query's earlier answer."""
    asked = {answer["query"] for answer in answers}
    labels = sample[field] if sample.has_field(field) else None
    kept = [d for d in (labels.detections if labels is not None else []) if d.label not in asked]
    previous_missing = sample[missing_field] if sample.has_field(missing_field) else None
    not_found = [q for q in previous_missing or [] if q not in asked]
    searched = searched_queries(sample, field)
    for answer in answers:
        detection, _ = find_to_detection(answer, metadata, fingerprint)
        searched[answer["query"]] = fingerprint
        if detection is None:
            not_found.append(answer["query"])
        else:
            kept.append(detection)
    # stored as [query, fingerprint] pairs: queries may hold "." which MongoDB keys cannot
    sample[field] = fo.TemporalDetections(detections=kept, searched=[[q, f] for q, f in searched.items()])
    sample[missing_field] = not_found


class FindEvents(ModelOperator):
    DEFAULTS = DEFAULTS
    DONE_LABEL = "Videos searched"

    @property
    def config(self):
        return foo.OperatorConfig(
            name="find",
            label="Marlin: find events in videos",
            description="Locate when each described event happens (TemporalDetections labelled with the query)",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        params = self.params(ctx)
        problems = forms.form_problems(OPERATION, params, ctx.dataset)
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Search")
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

    def execute(self, ctx):
        params = self.params(ctx)
        queries = parse_queries(params.get("queries"))
        if not queries:
            raise ValueError("find needs at least one query (parameter 'queries')")
        settings = forms.model_settings(ctx, params, FIND_PROMPT_TEMPLATE)
        fingerprint = settings_fingerprint(settings)
        field, missing_field = params["find_field"], not_found_field(params["find_field"])

        def todo(sample):
            searched = searched_queries(sample, field)
            remaining = [q for q in queries if params.get("overwrite") or searched.get(q) != fingerprint]
            return remaining or None

        def results(marlin, jobs, window_progress, window_store):
            return marlin.iter_finds(
                [(job.filepath, job.payload) for job in jobs],
                max_new_tokens=settings["max_new_tokens"],
                window_s=settings["window_s"],
                window_progress=window_progress,
                window_store=window_store,
                **settings["sampling"],
            )

        def write(sample, answers, metadata, job):
            write_answers(sample, answers, metadata, field, missing_field, fingerprint)

        run = ModelRun(OPERATION, field, params["error_field"], params["run_key"], dict(settings, queries=queries),
                       todo, results, write,
                       window_fingerprint=lambda job: settings_fingerprint([fingerprint, job.payload]))
        display.declare_string_list_field(ctx.target_view(), missing_field)
        outcome = execute_model_run(ctx, ctx.target_view(), run, forms.model_loader(ctx, settings))
        display.show_marlin_labels(ctx.target_view(), field, ctx)
        return outcome

    def __call__(self, sample_collection, queries, *, delegate: bool = False, **params):
        """Run from Python: ``foo.get_operator("@marlin/marlin/find")(dataset, ["a dog jumps"])``."""
        return super().__call__(sample_collection, delegate=delegate, queries=list(queries), **params)
