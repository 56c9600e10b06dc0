"""Reviewing Marlin's events (operators.adapters.review) on real datasets and videos: the reviewed field and its
provenance, Marlin's own field untouched, Marlin refusing to write a reviewed field, agreement through the
evaluate operator, export of the review, and a real re-caption keeping it."""

from __future__ import annotations

import json

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from marlin_core.review_edits import ReviewEditError
from media import make_video
from review_data import propose
from operators.adapters.review import (REVIEWED_TAG, SampleReview, holds_reviewed_labels, review_progress,
                                       reviewed_field_for)
from operators.export_annotations import export_annotations
from operators.run.validation import problems



@pytest.fixture(scope="module")
def ten_second_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("review") / "walk.mp4", size="64x48", fps=10, seconds=10)


@pytest.fixture
def proposed(dataset, ten_second_video):
    """One sample with Marlin's events as the caption operator writes them (fingerprinted)."""
    sample = fo.Sample(filepath=str(ten_second_video))
    dataset.add_sample(sample)
    dataset.compute_metadata()
    propose(sample)
    sample.save()
    return sample


def keys_by_label(review):
    return {row["label"]: row["key"] for row in review.rows()}


def test_accept_fix_reject_add_write_the_reviewed_field_with_provenance(proposed):
    marlin_before = proposed["marlin_events"].to_dict()
    review = SampleReview(proposed, "marlin_events", user="ana")
    keys = keys_by_label(review)
    review.accept(keys["a door opens"])
    fixed = review.nudge(keys["a person walks"], "end", 0.5)
    review.nudge(fixed, "end", 0.5)
    review.reject(keys["a cat jumps"])
    review.add("a dog barks", 9.0)
    assert REVIEWED_TAG not in proposed.tags  # "the person sits" is still pending
    review.relabel(keys["the person sits"], "the person sits down")

    proposed.reload()
    assert proposed["marlin_events"].to_dict() == marlin_before
    reviewed = proposed["marlin_events_reviewed"]
    assert reviewed.review_of == "marlin_events"
    by_label = {d.label: d for d in reviewed.detections}
    assert set(by_label) == {"a door opens", "a person walks", "the person sits down", "a dog barks"}
    source = {d.label: d for d in proposed["marlin_events"].detections}
    door, walk = by_label["a door opens"], by_label["a person walks"]
    assert (door.action, door.source_label_id, door.reviewed_by) == ("accepted", source["a door opens"].id, "ana")
    assert (walk.action, walk.start_s, walk.end_s) == ("fixed", 3.0, 6.0)
    assert (walk.source_start_s, walk.source_end_s, walk.source_confidence) == (3.0, 5.0, 0.4)
    assert walk.support == [31, 60] and walk.time_range == "3.0–6.0 s"
    assert by_label["the person sits down"].action == "fixed"
    dog = by_label["a dog barks"]
    assert (dog.action, dog.source_label_id, dog.start_s, dog.end_s) == ("added", None, 8.0, 10.0)
    assert "T" in door.reviewed_at and door.reviewed_at.endswith("+00:00")
    [cat] = reviewed.rejected
    assert (cat["label"], cat["source_label_id"], cat["action"], cat["reviewed_by"]) == \
        ("a cat jumps", source["a cat jumps"].id, "rejected", "ana")
    assert REVIEWED_TAG in proposed.tags
    assert [row["status"] for row in SampleReview(proposed, "marlin_events").rows()].count("pending") == 0


def test_split_merge_and_playhead_edits_stay_inside_the_video(proposed):
    review = SampleReview(proposed, "marlin_events", user="ana")
    keys = keys_by_label(review)
    review.split(keys["a person walks"], 4.0)
    review.set_edge(keys["a cat jumps"], "end", 12.0)  # past the end: clamped to 10 s
    with pytest.raises(ReviewEditError, match="cannot split"):
        review.split(keys["a door opens"], 5.0)
    first = [row for row in review.rows() if row["label"] == "a door opens"][0]["key"]
    review.merge_next(first)  # with the first half of the split walk
    proposed.reload()
    spans = sorted((d.label, d.start_s, d.end_s, d.action) for d in proposed["marlin_events_reviewed"].detections)
    assert spans == [("a cat jumps", 8.0, 10.0, "fixed"), ("a door opens", 0.0, 4.0, "fixed"),
                     ("a person walks", 4.0, 5.0, "fixed")]
    merged = [d for d in proposed["marlin_events_reviewed"].detections if d.label == "a door opens"][0]
    walk_id = [d.id for d in proposed["marlin_events"].detections if d.label == "a person walks"][0]
    assert merged.merged_source_ids == [walk_id]
    # the walk's second half and the door count as decided; only "the person sits" is left
    assert [r["label"] for r in SampleReview(proposed, "marlin_events").rows() if r["status"] == "pending"] == \
        ["the person sits"]


def test_low_confidence_first_and_a_repeat_proposal_counts_as_decided(proposed):
    review = SampleReview(proposed, "marlin_events", user="ana")
    assert [r["label"] for r in review.rows("confidence")] == \
        ["a cat jumps", "a person walks", "the person sits", "a door opens"]
    review.reject(keys_by_label(review)["a cat jumps"])
    # a later Marlin run: same events, new label ids
    propose(proposed, "other-hash")
    proposed.save()
    again = SampleReview(proposed, "marlin_events", user="ana")
    assert "a cat jumps" not in [r["label"] for r in again.rows() if r["status"] == "pending"]
    # undo: accepting a rejected row brings it back as accepted
    rejected_key = [r["key"] for r in again.rows() if r["status"] == "rejected"][0]
    again.accept(rejected_key)
    proposed.reload()
    assert proposed["marlin_events_reviewed"].rejected == []
    assert [d.action for d in proposed["marlin_events_reviewed"].detections] == ["accepted"]


def test_marlin_refuses_to_write_a_reviewed_field(proposed, trained_model_dir):
    dataset = proposed._dataset
    assert reviewed_field_for("marlin_find") == "marlin_find_reviewed"
    assert not holds_reviewed_labels(dataset, "marlin_events_reviewed")
    review = SampleReview(proposed, "marlin_events", user="ana")
    review.accept(keys_by_label(review)["a door opens"])
    assert holds_reviewed_labels(dataset, "marlin_events_reviewed")
    assert not holds_reviewed_labels(dataset, "marlin_events")
    for operation, param in (("caption", "events_field"), ("find", "find_field")):
        found = problems(operation, {param: "marlin_events_reviewed", "overwrite": True, "queries": ["q"]}, dataset)
        assert "holds reviewed labels" in found[param]
    assert "events_field" not in problems("caption", {}, dataset)
    with pytest.raises(Exception, match="holds reviewed labels"):
        foo.get_operator("@marlin/marlin/caption")(dataset, model=str(trained_model_dir),
                                                   events_field="marlin_events_reviewed")


def test_agreement_progress_evaluate_and_export(proposed, tmp_path):
    dataset = proposed._dataset
    progress = review_progress(dataset, "marlin_events")
    assert (progress.samples_reviewed, progress.samples_total, progress.accepted) == (0, 1, 0)
    review = SampleReview(proposed, "marlin_events", user="ana")
    keys = keys_by_label(review)
    review.accept(keys["a door opens"])
    review.set_edge(keys["a person walks"], "end", 6.0)  # boundary change (0 + 1) / 2 = 0.5 s
    review.nudge(keys["the person sits"], "start", -0.5)  # 0.25 s
    review.reject(keys["a cat jumps"])
    progress = review_progress(dataset, "marlin_events")
    assert (progress.samples_reviewed, progress.samples_total) == (1, 1)
    assert (progress.accepted, progress.fixed, progress.added, progress.rejected) == (1, 2, 0, 1)
    assert progress.mean_boundary_change_s == pytest.approx(0.25)

    result = foo.execute_operator("@marlin/marlin/evaluate", dict(dataset=dataset, params=dict(
        pred_field="marlin_events", gt_field="marlin_events_reviewed", eval_key="agreement", mode="events")))
    result.raise_exceptions()
    metrics = result.result["metrics"]
    # 3 of Marlin's 4 events match the 3 reviewed ones at tIoU >= 0.5
    assert metrics["fiftyone_precision"] == pytest.approx(75.0)
    assert metrics["fiftyone_recall"] == pytest.approx(100.0)
    dataset.reload()
    assert dataset.get_run_info("agreement_marlin").config.gt_field == "marlin_events_reviewed"

    out = tmp_path / "reviewed.json"
    summary = export_annotations(dataset, "marlin_events_reviewed", str(out), "activitynet")
    assert summary["segments"] == 3
    exported = json.loads(out.read_text())["walk"]
    assert exported["sentences"] == ["a door opens", "a person walks", "the person sits"]
    assert exported["timestamps"] == [[0.0, 2.0], [3.0, 6.0], [5.0, 7.0]]


def test_a_recaption_keeps_the_review(dataset, trained_model_dir, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"])))
    caption = foo.get_operator("@marlin/marlin/caption")
    assert caption(dataset, model=str(trained_model_dir))["done"] == 1
    sample = dataset.first()
    review = SampleReview(sample, "marlin_events", user="ana")
    for row in review.rows():
        review.accept(row["key"])
    sample.reload()
    before = sample["marlin_events_reviewed"].to_dict()
    assert before["detections"] and REVIEWED_TAG in sample.tags
    assert caption(dataset, model=str(trained_model_dir), overwrite=True)["done"] == 1
    sample.reload()
    assert sample["marlin_events_reviewed"].to_dict() == before
    assert REVIEWED_TAG in sample.tags
    # the new run's events repeat the accepted ones: nothing is pending again
    assert [r for r in SampleReview(sample, "marlin_events").rows() if r["status"] == "pending"] == []


def test_keys_typed_anywhere_in_the_box_are_each_one_action():
    from operators.review_panel import KEYS, typed_keys

    assert typed_keys("", "a") == "a"
    assert typed_keys("}}", "}}}") == "}"
    assert typed_keys("}}nr", "c}}nr") == "c"  # the caret was at the start
    assert typed_keys("}}nr", "}}n") == ""  # a deletion is no action
    assert typed_keys("ab", "xy") == "xy"
    assert {"a", "r", "}", "+", "n", "N", "c"} <= set(KEYS)


def test_find_spans_are_reviewed_the_same_way(dataset, ten_second_video):
    from operators.adapters.labels import find_answers_to_detections

    sample = fo.Sample(filepath=str(ten_second_video))
    dataset.add_sample(sample)
    dataset.compute_metadata()
    answers = [{"query": "a person walks", "span": (3.0, 5.0), "raw": "From 3.0 to 5.0.", "format_ok": True,
                "confidence": 0.6}]
    sample["marlin_find"], _ = find_answers_to_detections(answers, sample.metadata, "find-hash")
    sample.save()
    review = SampleReview(sample, "marlin_find", user="ana")
    [row] = review.rows()
    review.set_edge(row["key"], "start", 2.5)
    sample.reload()
    [span] = sample["marlin_find_reviewed"].detections
    assert (span.label, span.start_s, span.end_s, span.action, span.source_confidence) == \
        ("a person walks", 2.5, 5.0, "fixed", 0.6)
    assert holds_reviewed_labels(dataset, "marlin_find_reviewed")
    assert "holds reviewed labels" in problems("find", {"find_field": "marlin_find_reviewed", "queries": ["q"]},
                                               dataset)["find_field"]
