"""Events in seconds on grid tiles (``<field>_seconds``) and Marlin's App defaults, on real datasets.

The App draws a TemporalDetection on a tile as ``label [first, last]`` frames and nothing changes that;
every Marlin writer keeps a list of ``"label 1.0–2.0 s"`` strings beside the field (operators.adapters.seconds).
These tests run the real writers (caption, find, import, review through FiftyOne's executor / the review
adapter, on the tiny trained model) and check the texts follow the labels, user labels stay as they were,
and the App defaults (field colours, checked fields) are right.
"""

from __future__ import annotations

import json

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from media import make_video
from operators.adapters import display
from operators.adapters.review import SampleReview
from operators.adapters.seconds import span_texts
from tiny_model import TRAINED_TARGETS

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"
IMPORT = "@marlin/marlin/import_annotations"


def texts(labels, sample) -> list[str]:
    """What the tile should show for ``labels``: each label with its span in seconds, in time order."""
    out = []
    for d in sorted(labels.detections, key=lambda d: tuple(d.support)):
        start_s, end_s = (d.start_s, d.end_s) if d.has_field("marlin_hash") else d.to_timestamps(sample=sample)
        out.append(f"{d.label} {start_s:.1f}–{end_s:.1f} s")
    return out


def test_caption_and_find_write_the_spans_in_seconds_beside_their_labels(dataset, trained_model_dir, color_videos):
    dataset.add_samples([fo.Sample(filepath=str(color_videos[c])) for c in ("red", "blue")])
    foo.get_operator(CAPTION)(dataset, model=str(trained_model_dir))
    schema = dataset.get_field_schema()
    assert isinstance(schema["marlin_events_seconds"], fo.ListField)
    assert isinstance(schema["marlin_events_seconds"].field, fo.StringField)
    for sample in dataset:
        assert sample["marlin_events_seconds"] == texts(sample["marlin_events"], sample)
        assert sample["marlin_events_seconds"] and all(t.endswith(" s") for t in sample["marlin_events_seconds"])
    # a second find query adds to the labels; the texts follow in the same write
    red = dataset.match(fo.ViewField("filepath").ends_with("red.mp4"))
    foo.get_operator(FIND)(red, TRAINED_TARGETS["red"]["find"]["query"], model=str(trained_model_dir))
    foo.get_operator(FIND)(red, [TRAINED_TARGETS["red"]["find"]["query"], TRAINED_TARGETS["blue"]["find"]["query"]],
                           model=str(trained_model_dir))
    sample = red.first()
    assert sample["marlin_find_seconds"] == texts(sample["marlin_find"], sample)
    assert TRAINED_TARGETS["red"]["find"]["query"] in " ".join(sample["marlin_find_seconds"])
    assert not dataset.match(fo.ViewField("filepath").ends_with("blue.mp4")).first()["marlin_find_seconds"]
    # App defaults: each seconds field coloured like its labels and checked; ids, paths and metadata not
    colours = {e["path"]: e["fieldColor"] for e in dataset.app_config.color_scheme.fields}
    assert colours["marlin_events_seconds"] == colours["marlin_events"] == display.PREDICTION_COLOUR
    assert colours["marlin_find_seconds"] == colours["marlin_find"]
    active = dataset.app_config.active_fields
    assert active.exclude and {"id", "filepath", "metadata.frame_rate", "marlin_scene"} <= set(active.paths)
    assert {"sample_id", "support"} <= set(active.paths)  # a clips view's own fields (search's results)
    assert not {"marlin_events", "marlin_events_seconds", "marlin_find", "marlin_find_seconds"} & set(active.paths)


def test_a_users_label_in_marlins_field_is_kept_and_shown_from_its_frames(dataset, trained_model_dir, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"])))
    dataset.compute_metadata()
    sample = dataset.first()
    mine = fo.TemporalDetection.from_timestamps([0.5, 1.5], label="my note", sample=sample)
    sample["marlin_events"] = fo.TemporalDetections(detections=[mine])
    sample.save()
    before = mine.to_dict()
    # without overwrite the sample is left untouched (no texts either); with it, Marlin's events join the user's
    assert foo.get_operator(CAPTION)(dataset, model=str(trained_model_dir))["untouched"] == 1
    assert dataset.first()["marlin_events_seconds"] is None
    foo.get_operator(CAPTION)(dataset, model=str(trained_model_dir), overwrite=True)
    sample.reload()
    kept = [d for d in sample["marlin_events"].detections if d.label == "my note"]
    assert [d.to_dict() for d in kept] == [before]
    start_s, end_s = mine.to_timestamps(sample=sample)
    assert f"my note {start_s:.1f}–{end_s:.1f} s" in sample["marlin_events_seconds"]
    assert sample["marlin_events_seconds"] == texts(sample["marlin_events"], sample)


def test_a_users_field_with_the_seconds_name_is_never_written(dataset, trained_model_dir, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"]), marlin_events_seconds="my own notes"))
    outcome = foo.get_operator(CAPTION)(dataset, model=str(trained_model_dir))
    assert outcome["done"] == 1 and outcome["failed"] == 0
    assert dataset.first()["marlin_events_seconds"] == "my own notes"
    assert dataset.first()["marlin_events"].detections


def test_import_and_review_keep_the_seconds_in_step(dataset, tmp_path):
    video = make_video(tmp_path / "vid_a.mp4", size="64x48", fps=10, seconds=10)
    dataset.add_sample(fo.Sample(filepath=str(video)))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"vid_a": {"duration": 10.0, "timestamps": [[1.0, 2.5], [4.0, 6.0]],
                                        "sentences": ["a person waves", "a door opens"]}}))
    foo.get_operator(IMPORT)(dataset, path=str(gt), format="activitynet")
    sample = dataset.first()
    assert sample["ground_truth_seconds"] == ["a person waves 1.0–2.5 s", "a door opens 4.0–6.0 s"]
    assert {"path": "ground_truth_seconds", "fieldColor": display.GROUND_TRUTH_COLOUR} in \
        dataset.app_config.color_scheme.fields
    assert "ground_truth_seconds" not in dataset.app_config.active_fields.paths
    # a re-import with overwrite replaces the texts with the new labels'
    gt.write_text(json.dumps({"vid_a": {"duration": 10.0, "timestamps": [[3.0, 4.0]], "sentences": ["a dog barks"]}}))
    foo.get_operator(IMPORT)(dataset, path=str(gt), format="activitynet", overwrite=True)
    sample.reload()
    assert sample["ground_truth_seconds"] == ["a dog barks 3.0–4.0 s"]
    # review: each edit saves the reviewed field and its texts together
    review = SampleReview(sample, "ground_truth", user="ana")
    review.add("a cat jumps", 7.0)
    sample.reload()
    reviewed = sample["ground_truth_reviewed"]
    assert sample["ground_truth_reviewed_seconds"] == span_texts(reviewed, sample.metadata)
    assert any(t.startswith("a cat jumps ") for t in sample["ground_truth_reviewed_seconds"])


def test_the_app_colours_keep_the_sessions_own_and_add_the_stored_ones():
    stored = fo.ColorScheme(color_by="field", fields=[{"path": "marlin_events", "fieldColor": "#ff6d04"},
                                                      {"path": "ground_truth", "fieldColor": "#00b3a1"}])
    session = fo.ColorScheme(color_by="value", fields=[{"path": "ground_truth", "fieldColor": "#123456",
                                                        "valueColors": None}])
    params = display.app_colour_scheme(stored, session)
    assert params == {"color_by": "value", "fields": [{"path": "ground_truth", "fieldColor": "#123456"},
                                                       {"path": "marlin_events", "fieldColor": "#ff6d04"}]}
    assert display.app_colour_scheme(stored, fo.ColorScheme(fields=stored.fields)) is None
    assert display.app_colour_scheme(stored, None)["fields"] == stored.fields
    assert display.app_colour_scheme(None, session) is None


def test_default_fields_keep_a_users_list_and_repair_an_exclusion_list(dataset, tmp_path):
    from fiftyone.core.odm.dataset import ActiveFields

    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "a.mp4"), note="x",
                                 gt=fo.TemporalDetections(), gt_seconds=["a 1.0–2.0 s"]))
    dataset.app_config.active_fields = ActiveFields(exclude=False, paths=["gt", "note"])
    dataset.save()
    display.set_default_active(dataset, show=["gt_seconds"], hide=["note"])
    assert (dataset.app_config.active_fields.exclude, dataset.app_config.active_fields.paths) == \
        (False, ["gt", "gt_seconds"])
    # an exclusion list naming only hidden labels (as Marlin wrote before) checked ids, paths and metadata too
    dataset.app_config.active_fields = ActiveFields(exclude=True, paths=["gt"])
    dataset.save()
    display.hide_in_sidebar(dataset, ["eval_copy"])
    paths = dataset.app_config.active_fields.paths
    assert paths[:2] == ["gt", "eval_copy"] and {"id", "filepath", "note", "tags"} <= set(paths)
    assert "gt_seconds" not in paths
