"""Search held to the caption/find standard, each test a reproduction from issue 24 (items 1, 3, 6, 7, 9).

Real FiftyOne datasets on the local MongoDB, ffmpeg-made clips and the tiny trained checkpoint, run through
FiftyOne's executor; concurrency as two real processes (the zygote's forked children), sharding through
FiftyOne's delegated-operation service. Searches are exhaustive where the ranking does not matter (no
captioning: every video is asked every query), so each test is a handful of model calls.
"""

from __future__ import annotations

import os

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from bson import ObjectId
from fiftyone import ViewField as F
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionContext, ExecutionError, ExecutionRunState

from operators.adapters.labels import marlin_owns
from operators.run.runs import run_history
from operators.run.shards import queue_shards, shard_outcome
from zygote import wait_exit

SEARCH = "@marlin/marlin/search"
CAPTION = "@marlin/marlin/caption"


def _search(collection, model_dir, queries, **params):
    return foo.get_operator(SEARCH)(collection, queries, model=str(model_dir), **params)


def _stored(dataset) -> dict:
    return {str(doc["_id"]): doc for doc in dataset._sample_collection.find({})}


@pytest.fixture
def clips(dataset, color_videos):
    """Two red and two blue clips with a user note each."""
    for index in range(4):
        color = "red" if index % 2 == 0 else "blue"
        dataset.add_sample(fo.Sample(filepath=str(color_videos[color]), color=color, note=f"mine {index}"))
    return dataset


def test_a_string_is_one_query(clips, trained_model_dir):
    outcome = _search(clips, trained_model_dir, "blue sky", exhaustive=True, view_name="sky")
    assert outcome["queries"] == ["blue sky"]
    assert outcome["find_calls"] == len(clips) == outcome["done"]
    assert {d.query for s in clips for d in s.marlin_search.detections} == {"blue sky"}
    # text with one query per line is one query per line
    lines = _search(clips, trained_model_dir, "red light\nblue sky", exhaustive=True, view_name="two")
    assert lines["queries"] == ["red light", "blue sky"] and lines["find_calls"] == 2 * len(clips)


def test_search_labels_are_marlins_and_a_second_search_may_replace_them(clips, trained_model_dir):
    """Search's labels carry Marlin's content stamp as written (score included), so the ownership rule treats
    them as Marlin's: a second search into the same custom field is not refused as someone else's field."""
    _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="mine", search_field="found")
    detections = [d for s in clips for d in s["found"].detections]
    assert detections and all(marlin_owns(d) for d in detections)
    again = _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="mine", search_field="found",
                    overwrite=True)
    assert again["status"] == "completed"


def test_search_writes_a_run_record(clips, trained_model_dir):
    outcome = _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="reds")
    records = run_history(clips, "marlin_search")
    assert [r["operation"] for r in records] == ["search"] and records[0]["status"] == "completed"
    assert records[0]["outcome"]["find_calls"] == outcome["find_calls"] == 4
    assert records[0]["settings"]["queries"] == ["red light"] and records[0]["model"]["device"]
    assert outcome["status"] == "completed" and outcome["run_key"] == "marlin_search"
    assert clips.get_run_info("marlin_search").config.settings["queries"] == ["red light"]


def test_every_video_failing_is_a_failed_run_that_keeps_the_last_record(clips, trained_model_dir, tmp_path):
    _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="reds")
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(open(clips.first().filepath, "rb").read())
    clips.add_sample(fo.Sample(filepath=str(gone), color="gone"))
    os.remove(gone)
    outcome = _search(clips.match(F("color") == "gone"), trained_model_dir, ["blue sky"], exhaustive=True,
                      view_name="lost")
    assert outcome["status"] == "failed" and outcome["failed"] == 1 and str(gone) in outcome["errors"][0]
    assert [r["status"] for r in run_history(clips, "marlin_search")] == ["completed", "failed"]
    assert clips.get_run_info("marlin_search").config.settings["queries"] == ["red light"]


def test_unreadable_answers_are_listed_with_their_raw_text(clips, trained_model_dir):
    # one new token cannot hold "From 1.0 to 2.0.": every answer is cut before its span
    outcome = _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="cut", max_new_tokens=1)
    assert outcome["done"] == 4 and outcome["moments"] == 0
    assert outcome["unreadable"] == 4 and len(outcome["unreadable_answers"]) == 4
    first = outcome["unreadable_answers"][0]
    assert "'red light'" in first and "no time span" in first and clips.first().filepath in first
    raw = first.rsplit("answer ", 1)[1]
    assert raw.strip("'\"") and "From 1.0 to 2.0." not in raw


def test_ground_truth_is_not_a_results_field_without_overwrite(clips, trained_model_dir):
    for sample in clips:
        sample["ground_truth"] = fo.TemporalDetections(detections=[
            fo.TemporalDetection(label="my label", support=[1, 5], reviewer="me")])
        sample.save()
    before = _stored(clips)
    with pytest.raises(ExecutionError, match="search_field.*ground_truth.*Marlin did not make"):
        _search(clips, trained_model_dir, ["red light"], exhaustive=True, search_field="ground_truth")
    assert _stored(clips) == before and run_history(clips) == []
    # the form says so, on the field, and why overwrite changes it
    ctx = ExecutionContext(request_params=dict(dataset_name=clips.name, params=dict(
        queries="red light", search_field="ground_truth")))
    advanced = foo.get_operator(SEARCH).resolve_input(ctx).type.properties["advanced"].type.properties
    assert advanced["search_field"].invalid and "overwrite" in advanced["search_field"].error_message
    # with overwrite the results go beside the user's labels, which stay byte-identical
    outcome = _search(clips, trained_model_dir, ["red light"], exhaustive=True, search_field="ground_truth",
                      overwrite=True)
    assert outcome["done"] == 4
    for sample_id, doc in _stored(clips).items():
        mine = before[sample_id]["ground_truth"]["detections"]
        assert doc["ground_truth"]["detections"][:1] == mine
        assert [d["query"] for d in doc["ground_truth"]["detections"][1:]] == ["red light"]


def test_empty_view_with_an_existing_name_changes_nothing(clips, trained_model_dir):
    _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="reds")
    before, saved = _stored(clips), len(clips.load_saved_view("reds"))
    with pytest.raises(ExecutionError, match="view to search has no samples"):
        _search(clips.match(F("color") == "green"), trained_model_dir, ["blue sky"], exhaustive=True,
                view_name="reds")
    assert _stored(clips) == before and len(clips.load_saved_view("reds")) == saved == 4


def test_empty_dataset_is_a_clear_message(dataset, trained_model_dir):
    with pytest.raises(ExecutionError, match="has no samples: add videos"):
        _search(dataset, trained_model_dir, ["red light"])
    assert run_history(dataset) == []


def test_earlier_results_are_replaced_only_in_the_searched_view_with_a_warning(clips, trained_model_dir):
    first = _search(clips, trained_model_dir, ["red light"], exhaustive=True, view_name="reds")
    assert first["warnings"] == []
    reds = clips.match(F("color") == "red")
    ctx = ExecutionContext(request_params=dict(dataset_name=clips.name, view=reds._serialize(),
                                               params=dict(queries="blue sky", view_name="reds")))
    notice = foo.get_operator(SEARCH).resolve_input(ctx).type.properties["earlier_results"]
    assert "2 sample(s) of this view: they are replaced" in notice.view.description
    second = _search(reds, trained_model_dir, ["blue sky"], exhaustive=True, view_name="reds")
    assert "2 sample(s) of this view" in second["warnings"][0] and "2 sample(s) outside" in second["warnings"][0]
    assert second["replaced"] == 2
    queries = {s.color + str(s.note): sorted(d.query for d in s.marlin_search.detections) for s in clips}
    assert queries == {"redmine 0": ["blue sky"], "bluemine 1": ["red light"], "redmine 2": ["blue sky"],
                       "bluemine 3": ["red light"]}
    # the saved view shows what the search holds now: the new answers and the kept ones outside the view
    assert len(clips.load_saved_view("reds")) == 4


def test_queue_shards_checks_every_parameter_before_queueing(clips, trained_model_dir):
    service = DelegatedOperationService()
    model = dict(model=str(trained_model_dir))
    for uri, params, where in [(CAPTION, dict(fps=-1), "fps"), (CAPTION, dict(events_field="filepath"), "events_field"),
                               (SEARCH, dict(queries=["red light"], fps=-1), "fps"),
                               (SEARCH, dict(queries=["red light"], search_field="note"), "search_field"),
                               (SEARCH, dict(queries="red light", max_new_tokens=-1), "max_new_tokens")]:
        with pytest.raises(ValueError, match=where):
            queue_shards(uri, clips, 2, **model, **params)
    for uri, params in [(CAPTION, {}), (SEARCH, dict(queries=["red light"]))]:  # a model folder that is not there
        with pytest.raises(ValueError, match="model"):
            queue_shards(uri, clips, 2, model=str(trained_model_dir.parent / "no-such-model"), **params)
    assert service.get_queued_operations(dataset_name=clips.name) == []


def test_a_sharded_search_covers_the_whole_view(clips, trained_model_dir):
    clips.persistent = True  # the delegated operations load it by name
    ops = queue_shards(SEARCH, clips, 2, model=str(trained_model_dir), queries=["red light"], exhaustive=True,
                       view_name="sharded")
    assert len(ops) == 2
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=clips.name)
    assert [service.get(ObjectId(op)).run_state for op in ops] == [ExecutionRunState.COMPLETED] * 2
    clips.reload()
    assert all([d.query for d in s.marlin_search.detections] == ["red light"] for s in clips)
    assert len(clips.load_saved_view("sharded")) == 4  # every shard's moments in the one saved view
    summary = shard_outcome(clips, "marlin_search", 2)
    assert summary["complete"] and summary["done"] == 4


def test_two_searches_at_once_keep_both_answers(zygote, color_videos, trained_model_dir, tmp_path):
    """Two processes search the same field under two names: every sample ends with both searches' answers."""
    dataset = fo.Dataset(persistent=True)
    try:
        for index in range(6):
            color = "red" if index % 2 == 0 else "blue"
            path = tmp_path / f"{index}-{color}.mp4"
            os.link(color_videos[color], path)
            dataset.add_sample(fo.Sample(filepath=str(path), note=f"mine {index}"))
        for trial in range(3):
            pids = [zygote.start(SEARCH, dataset.name, model=str(trained_model_dir), queries=[query],
                                 view_name=f"{name}{trial}", exhaustive=True)
                    for name, query in (("sred", "red light"), ("sblue", "blue sky"))]
            for pid in pids:
                wait_exit(pid)
            records = [r for r in run_history(dataset) if r["pid"] in pids]
            assert [r["status"] for r in records] == ["completed"] * 2, records
            assert all(r["outcome"]["done"] == 6 for r in records)
            dataset.reload()
            for sample in dataset:
                found = sorted((d.search, d.query) for d in sample.marlin_search.detections
                               if d.search.endswith(str(trial)))
                assert found == [(f"sblue{trial}", "blue sky"), (f"sred{trial}", "red light")], (trial, found)
            for name in ("sred", "sblue"):
                assert len(dataset.load_saved_view(f"{name}{trial}")) == 6
    finally:
        dataset.delete()
