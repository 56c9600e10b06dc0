"""The caption operator through FiftyOne's own executor, on the local MongoDB, with the tiny trained model."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.delegated import DelegatedOperationService

from marlin_core.contract import parse_caption
from operators.run.runs import latest_outcome
from tiny_model import TRAINED_TARGETS

CAPTION = "@marlin/marlin/caption"


def add_videos(dataset, paths) -> list[str]:
    samples = [fo.Sample(filepath=str(p)) for p in paths]
    return dataset.add_samples(samples)


def run(dataset, model_dir, **params):
    """The summary an SDK caller gets (an immediate run's generator sends it to the App only)."""
    return foo.get_operator(CAPTION)(dataset, model=str(model_dir), **params)


def assert_captioned(sample, color):
    expected = parse_caption(TRAINED_TARGETS[color]["caption"])
    events = sample["marlin_events"]
    assert isinstance(events, fo.TemporalDetections)
    assert [d.label for d in events.detections] == [e["description"] for e in expected["events"]]
    assert [(d.start_s, d.end_s) for d in events.detections] == [(e["start"], e["end"]) for e in expected["events"]]
    total = sample.metadata.total_frame_count
    for detection in events.detections:
        first, last = detection.support
        assert 1 <= first <= last <= total
        assert 0.0 <= detection.confidence <= 1.0
        assert detection.to_timestamps(sample=sample)[0] == pytest.approx(detection.start_s, abs=0.11)
    assert sample["marlin_scene"] == expected["scene"]
    assert sample["marlin_caption"] == TRAINED_TARGETS[color]["caption"]


def test_plugin_operators_are_listed():
    uris = {op.uri for op in foo.list_operators()}
    assert {CAPTION, "@marlin/marlin/find", "@marlin/marlin/evaluate",
            "@marlin/marlin/import_annotations", "@marlin/marlin/review_errors"} <= uris


def test_caption_writes_native_labels(dataset, trained_model_dir, color_videos):
    add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    outcome = run(dataset, trained_model_dir)
    assert outcome["done"] == 2 and outcome["failed"] == 0 and outcome["skipped"] == 0
    for sample in dataset:
        assert_captioned(sample, "red" if "red" in sample.filepath else "blue")
    schema = dataset.get_field_schema()
    assert schema["marlin_events"].document_type is fo.TemporalDetections
    assert isinstance(schema["marlin_scene"], fo.StringField)
    assert isinstance(schema["marlin_caption"], fo.StringField)
    info = dataset.get_run_info("marlin_caption")
    assert info.config.settings["model"] == str(trained_model_dir)
    assert "transformers" in info.config.versions
    assert info.config.outcome["done"] == 2


def test_rerun_skips_done_samples_and_overwrite_recomputes(dataset, trained_model_dir, color_videos):
    add_videos(dataset, [color_videos["red"]])
    run(dataset, trained_model_dir)
    first_ids = [d.id for d in dataset.first()["marlin_events"].detections]
    again = run(dataset, trained_model_dir)
    assert again["skipped"] == 1 and again["done"] == 0
    assert [d.id for d in dataset.first()["marlin_events"].detections] == first_ids
    forced = run(dataset, trained_model_dir, overwrite=True)
    assert forced["done"] == 1
    assert len(dataset.first()["marlin_events"].detections) == len(first_ids)


def test_custom_field_names(dataset, trained_model_dir, color_videos):
    add_videos(dataset, [color_videos["blue"]])
    run(dataset, trained_model_dir, events_field="ev", scene_field="sc", caption_field="cap")
    sample = dataset.first()
    assert len(sample["ev"].detections) == 2 and sample["sc"] and sample["cap"]
    assert not dataset.has_sample_field("marlin_events")


def test_selected_samples_only(dataset, trained_model_dir, color_videos):
    ids = add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    foo.execute_operator(
        CAPTION, dict(dataset=dataset, selected=[ids[1]], params=dict(model=str(trained_model_dir),
                                                                    view_target="SELECTED_SAMPLES")))
    assert latest_outcome(dataset)["done"] == 1
    assert dataset[ids[0]]["marlin_events"] is None
    assert dataset[ids[1]]["marlin_events"] is not None


def test_mixed_dataset_reports_per_sample_errors(dataset, trained_model_dir, color_videos, broken):
    ids = add_videos(dataset, [color_videos["red"], broken["empty"], broken["missing"], broken["text"]])
    # labels a user had before must survive a failed run
    keep = fo.TemporalDetections(detections=[fo.TemporalDetection(label="mine", support=[1, 2])],
                                 marlin_settings="an earlier run")
    empty_sample = dataset[ids[1]]
    empty_sample["marlin_events"] = keep
    empty_sample.save()
    outcome = run(dataset, trained_model_dir)
    assert outcome["done"] == 1 and outcome["failed"] == 3
    assert_captioned(dataset[ids[0]], "red")
    for sample_id, path in zip(ids[1:], [broken["empty"], broken["missing"], broken["text"]]):
        error = dataset[sample_id]["marlin_error"]
        assert error.startswith("caption: ") and str(path) in error, error
    # each error names its cause (the file's name says "missing": the words checked are the diagnosis's)
    assert "empty" in dataset[ids[1]]["marlin_error"]
    assert "no such file" in dataset[ids[2]]["marlin_error"]
    assert "not a video file" in dataset[ids[3]]["marlin_error"]
    for sample_id in ids[1:]:
        assert not dataset[sample_id]["marlin_error"].rstrip().endswith(("error:", "error")), "cause cut off"
    assert [d.label for d in dataset[ids[1]]["marlin_events"].detections] == ["mine"]


def test_garbage_model_completes_with_raw_text(dataset, random_model_dir, color_videos):
    add_videos(dataset, [color_videos["red"]])
    outcome = run(dataset, random_model_dir, max_new_tokens=16)
    assert outcome["done"] == 1
    sample = dataset.first()
    assert sample["marlin_events"].detections == []
    assert sample["marlin_events"].format_ok is False
    assert isinstance(sample["marlin_caption"], str)


def test_delegated_run_executes_like_a_worker(dataset, trained_model_dir, color_videos):
    add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    queued = foo.execute_operator(CAPTION, dict(dataset=dataset, request_delegation=True,
                                                params=dict(model=str(trained_model_dir))))
    queued.raise_exceptions()
    assert queued.delegated
    assert not dataset.has_sample_field("marlin_events")
    service = DelegatedOperationService()
    service.execute_queued_operations(operator=CAPTION, dataset_name=dataset.name)
    operation = service.get(queued.result["id"])
    assert operation.run_state == "completed", operation.result
    dataset.reload()
    for sample in dataset:
        assert_captioned(sample, "red" if "red" in sample.filepath else "blue")


def test_sdk_call_pattern(dataset, trained_model_dir, color_videos):
    add_videos(dataset, [color_videos["blue"]])
    caption = foo.get_operator(CAPTION)
    result = caption(dataset, model=str(trained_model_dir))
    assert result["done"] == 1 and result["status"] == "completed"
    assert_captioned(dataset.first(), "blue")


def test_image_samples_of_a_grouped_dataset_get_an_error(trained_model_dir, color_videos, broken):
    grouped = fo.Dataset()
    try:
        grouped.add_group_field("group", default="video")
        group = fo.Group()
        grouped.add_samples([
            fo.Sample(filepath=str(color_videos["blue"]), group=group.element("video")),
            fo.Sample(filepath=str(broken["image"]), group=group.element("image")),
        ])
        mixed = grouped.select_group_slices(_allow_mixed=True)  # what the App shows for "all slices"
        assert mixed.media_type == "mixed"
        result = foo.get_operator(CAPTION)(mixed, model=str(trained_model_dir))
        assert result["done"] == 1 and result["failed"] == 1
        image = mixed.match(fo.ViewField("filepath") == str(broken["image"])).first()
        assert image["marlin_error"] == "caption: not a video sample (media type 'image')"
        video = mixed.match(fo.ViewField("filepath") == str(color_videos["blue"])).first()
        assert_captioned(video, "blue")
    finally:
        grouped.delete()


def test_incomplete_or_stale_metadata_is_recomputed(dataset, trained_model_dir, color_videos, tmp_path):
    """Metadata without a frame rate used to stop the whole run; stale metadata clamped events to 0.3 s."""
    ids = add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    incomplete, stale = dataset[ids[0]], dataset[ids[1]]
    incomplete.metadata = fo.VideoMetadata(duration=3.0)
    incomplete.save()
    stale.metadata = fo.VideoMetadata(duration=0.3, frame_rate=10.0, total_frame_count=3)
    stale.save()
    outcome = run(dataset, trained_model_dir)
    assert outcome["done"] == 2 and outcome["failed"] == 0
    for sample in dataset:
        assert sample.metadata.frame_rate and sample.metadata.duration > 2.5
        assert_captioned(sample, "red" if "red" in sample.filepath else "blue")


def test_failed_run_keeps_the_record_of_the_labels(dataset, trained_model_dir, color_videos, tmp_path):
    from operators.run.runs import run_history

    ids = add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    run(dataset, trained_model_dir)
    # a folder that passes the form's model check (it holds a config.json) but does not load: the run starts,
    # then fails (a missing folder is refused before any run since the form checks it)
    unloadable = tmp_path / "nowhere"
    unloadable.mkdir()
    (unloadable / "config.json").write_text("{}")
    with pytest.raises(Exception, match="nowhere"):
        run(dataset, unloadable, overwrite=True)
    info = dataset.get_run_info("marlin_caption")
    assert info.config.settings["model"] == str(trained_model_dir)
    assert info.config.outcome["done"] == 2 and info.config.model["device"] == "cpu"
    assert [r["status"] for r in run_history(dataset, "marlin_caption")] == ["completed", "failed"]
    # a run on one selected sample records its view, and does not pass for a dataset-wide run
    foo.execute_operator(CAPTION, dict(dataset=dataset, selected=[ids[1]], params=dict(
        model=str(trained_model_dir), view_target="SELECTED_SAMPLES", overwrite=True)))
    records = run_history(dataset, "marlin_caption")
    assert records[-1]["status"] == "completed" and records[-1]["view"]["samples"] == 1
    assert any("select" in stage.lower() for stage in records[-1]["view"]["stages"])
