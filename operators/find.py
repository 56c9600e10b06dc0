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

from . import forms
from .labels import find_to_detection
from .models import get_marlin
from .processing import (
    Job,
    Outcome,
    clear_error,
    ensure_metadata,
    error_message,
    partial_field,
    unprocessable_reason,
    window_hooks,
    write_error,
)
from .runs import record_run, settings_fingerprint

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


class FindEvents(foo.Operator):
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

    def resolve_execution_options(self, ctx):
        return forms.execution_options(self, ctx)

    def resolve_input(self, ctx):
        inputs = types.Object()
        forms.target_input(inputs, ctx, "Search")
        inputs.list(
            "queries",
            types.String(),
            default=[],
            label="Queries",
            description="Event descriptions to locate, e.g. 'a dog jumps over the fence'.",
        )
        if not parse_queries(ctx.params.get("queries")):
            inputs.view("no_queries", types.Warning(label="Enter at least one query."))
        forms.model_inputs(inputs)
        forms.field_input(inputs, ctx, "find_field", DEFAULTS["find_field"], "Results field",
                          "TemporalDetections field; one detection per query found.")
        inputs.str("error_field", default=DEFAULTS["error_field"], label="Error field",
                   description="Per-sample error messages (bad file, failed generation) go here.")
        inputs.str("run_key", default=DEFAULTS["run_key"], label="Run key",
                   description="Name of the FiftyOne run that records the settings.")
        inputs.int("max_new_tokens", default=DEFAULTS["max_new_tokens"], label="Max new tokens",
                   description="A find answer is about 12 tokens.")
        forms.sampling_inputs(inputs)
        forms.overwrite_input(inputs)
        return types.Property(inputs, view=types.View(label="Marlin: find events"))

    def execute(self, ctx):
        params = {**DEFAULTS, **{k: v for k, v in ctx.params.items() if v is not None}}
        queries = parse_queries(params.get("queries"))
        if not queries:
            raise ValueError("find needs at least one query (parameter 'queries')")
        view = ctx.target_view()
        sampling = forms.read_sampling(ctx)
        window_s = float(params.get("window_s") or 120.0)
        settings = {
            "model": params.get("model") or forms.DEFAULT_MODEL,
            "revision": params.get("revision"),
            "prompt": FIND_PROMPT_TEMPLATE,
            "max_new_tokens": int(params["max_new_tokens"]),
            "do_sample": False,
            "sampling": sampling,
            "window_s": window_s,
        }
        fingerprint = settings_fingerprint(settings)
        record_run(view, params["run_key"], OPERATION, dict(settings, queries=queries))
        field, missing_field = params["find_field"], not_found_field(params["find_field"])

        outcome, jobs = Outcome(), []
        for sample in view.iter_samples():
            reason = unprocessable_reason(sample)
            if reason:
                outcome.fail(f"{sample.filepath}: {reason}")
                write_error(sample, params["error_field"], OPERATION, reason)
                continue
            searched = self._searched(sample, field)
            todo = [q for q in queries if params.get("overwrite") or searched.get(q) != fingerprint]
            if not todo:
                outcome.skipped += 1
                continue
            jobs.append(Job(sample.id, sample.filepath, todo))

        if jobs:
            marlin = get_marlin(settings["model"], device=forms.read_device(ctx), revision=settings["revision"],
                                token=forms.read_token(ctx))
            window_progress, window_store = window_hooks(
                ctx, ctx.dataset, jobs, field, lambda job: settings_fingerprint([fingerprint, job.payload]))
            results = marlin.iter_finds(
                [(job.filepath, job.payload) for job in jobs],
                window_progress=window_progress,
                window_store=window_store,
                max_new_tokens=settings["max_new_tokens"],
                window_s=window_s,
                **sampling,
            )
            for index, (job, (_, result)) in enumerate(zip(jobs, results), start=1):
                sample = ctx.dataset[job.sample_id]
                if isinstance(result, BaseException):
                    message = error_message(job.filepath, result)
                    outcome.fail(message)
                    write_error(sample, params["error_field"], OPERATION, message)
                else:
                    self._write(sample, result, field, missing_field, params, fingerprint, outcome)
                forms.report_progress(ctx, index, len(jobs), job.filepath)

        record_run(view, params["run_key"], OPERATION, dict(settings, queries=queries), outcome.as_dict())
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return dict(outcome.as_dict(), run_key=params["run_key"])

    @staticmethod
    def _searched(sample, field: str) -> dict[str, str]:
        """``{query: settings fingerprint}`` of the queries already answered on this sample."""
        labels = sample[field] if sample.has_field(field) else None
        pairs = getattr(labels, "searched", None) if labels is not None else None
        return {query: fingerprint for query, fingerprint in pairs or []}

    def _write(self, sample, results: list[dict], field, missing_field, params, fingerprint, outcome) -> None:
        metadata = ensure_metadata(sample._dataset, sample)
        if metadata is None:
            message = f"{sample.filepath}: cannot read video metadata"
            outcome.fail(message)
            write_error(sample, params["error_field"], OPERATION, message)
            return
        labels = sample[field] if sample.has_field(field) and sample[field] is not None else None
        asked = {result["query"] for result in results}
        kept = [d for d in (labels.detections if labels else []) if d.label not in asked]
        searched = self._searched(sample, field)
        not_found = [q for q in (sample[missing_field] if sample.has_field(missing_field) else None) or []
                     if q not in asked]
        for result in results:
            detection, _ = find_to_detection(result, metadata, fingerprint)
            searched[result["query"]] = fingerprint
            if detection is None:
                not_found.append(result["query"])
            else:
                kept.append(detection)
        # stored as [query, fingerprint] pairs: queries may hold "." which MongoDB keys cannot
        sample[field] = fo.TemporalDetections(detections=kept, searched=[[q, f] for q, f in searched.items()])
        sample[missing_field] = not_found
        if sample.has_field(partial_field(field)):
            sample[partial_field(field)] = None
        clear_error(sample, params["error_field"], OPERATION)
        sample.save()
        outcome.done += 1

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("done", label="Videos searched")
        outputs.int("skipped", label="Skipped (all queries done with these settings)")
        outputs.int("failed", label="Failed (see the error field)")
        outputs.list("errors", types.String(), label="Errors")
        return types.Property(outputs, view=types.View(label="Marlin find"))

    def __call__(self, sample_collection, queries, *, delegate: bool = False, **params):
        """Run from Python: ``foo.get_operator("@marlin/marlin/find")(dataset, ["a dog jumps"])``."""
        return foo.execute_operator(
            self.uri,
            dict(view=sample_collection.view(), params=dict(params, queries=list(queries))),
            request_delegation=delegate,
        )
