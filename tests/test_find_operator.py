"""The find operator through FiftyOne's executor, with the tiny trained model."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionError

from marlin_core.contract import parse_find
from tiny_model import TRAINED_TARGETS

FIND = "@marlin/marlin/find"


def run(dataset, model_dir, queries, **params):
    return foo.get_operator(FIND)(dataset, queries, model=str(model_dir), **params)


@pytest.fixture
def red_dataset(dataset, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"])))
    return dataset


def test_find_writes_one_detection_per_query(red_dataset, trained_model_dir):
    target = TRAINED_TARGETS["red"]["find"]
    outcome = run(red_dataset, trained_model_dir, [target["query"]])
    assert outcome["done"] == 1
    sample = red_dataset.first()
    (detection,) = sample["marlin_find"].detections
    assert detection.label == target["query"]
    assert (detection.start_s, detection.end_s) == parse_find(target["answer"])["span"]
    assert detection.raw == target["answer"] and detection.format_ok is True
    assert 0.0 <= detection.confidence <= 1.0
    first, last = detection.support
    assert 1 <= first <= last <= sample.metadata.total_frame_count
    assert red_dataset.get_field_schema()["marlin_find"].document_type is fo.TemporalDetections
    assert red_dataset.get_run_info("marlin_find").config.settings["queries"] == [target["query"]]


def test_one_string_is_one_query(red_dataset, trained_model_dir):
    run(red_dataset, trained_model_dir, "red light")
    assert [d.label for d in red_dataset.first()["marlin_find"].detections] == ["red light"]


def test_new_query_is_added_and_same_query_replaces_only_itself(red_dataset, trained_model_dir):
    run(red_dataset, trained_model_dir, ["red light"])
    first_id = red_dataset.first()["marlin_find"].detections[0].id
    run(red_dataset, trained_model_dir, ["red fades"])
    labels = [d.label for d in red_dataset.first()["marlin_find"].detections]
    assert "red light" in labels
    assert red_dataset.first()["marlin_find"].detections[0].id == first_id
    again = run(red_dataset, trained_model_dir, ["red light"])
    assert again["skipped"] == 1
    run(red_dataset, trained_model_dir, ["red light"], overwrite=True)
    detections = red_dataset.first()["marlin_find"].detections
    assert [d.label for d in detections].count("red light") == 1
    assert next(d for d in detections if d.label == "red light").id != first_id


def test_not_found_queries_are_recorded(red_dataset, random_model_dir):
    outcome = run(red_dataset, random_model_dir, ["a dog jumps.", "a cat sleeps"], max_new_tokens=8)
    assert outcome["done"] == 1
    sample = red_dataset.first()
    assert sample["marlin_find"].detections == []
    assert sample["marlin_find_not_found"] == ["a dog jumps.", "a cat sleeps"]
    # not-found queries count as done: a rerun does not ask again
    assert run(red_dataset, random_model_dir, ["a dog jumps."], max_new_tokens=8)["skipped"] == 1


def test_queries_are_tidied(red_dataset, trained_model_dir):
    run(red_dataset, trained_model_dir, ["red light", "", "red  light", "  red fades  "])
    detections = red_dataset.first()["marlin_find"].detections
    not_found = red_dataset.first()["marlin_find_not_found"]
    assert sorted([d.label for d in detections] + not_found) == ["red fades", "red light"]


def test_no_query_is_a_clear_error(red_dataset, trained_model_dir):
    with pytest.raises(ExecutionError, match="at least one query"):
        foo.execute_operator(FIND, dict(dataset=red_dataset, params=dict(model=str(trained_model_dir))))
