"""Evaluation, ground-truth import and error review through FiftyOne's executor on known numbers."""

from __future__ import annotations

import json

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionError

from media import make_video

FPS = 10


@pytest.fixture(scope="module")
def ten_second_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-videos")
    return [make_video(root / f"{name}.mp4", size="64x48", fps=FPS, seconds=10) for name in ("vid_a", "vid_b")]


def detections(sample, spans, **extra):
    items = []
    for label, start_s, end_s, *confidence in spans:
        detection = fo.TemporalDetection.from_timestamps([start_s, end_s], sample=sample, label=label,
                                                         start_s=start_s, end_s=end_s, **extra)
        if confidence:
            detection.confidence = confidence[0]
        items.append(detection)
    return fo.TemporalDetections(detections=items)


@pytest.fixture
def eval_dataset(dataset, ten_second_videos):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    dataset.compute_metadata()
    a, b = dataset.sort_by("filepath")
    a["ground_truth"] = detections(a, [("open door", 0, 2), ("walk", 4, 6)])
    a["marlin_events"] = detections(a, [("door opens", 0, 2, 0.9), ("walking", 4.5, 6, 0.8), ("sit", 8, 9, 0.5)])
    a["gt_queries"] = detections(a, [("q1", 0, 2), ("q2", 4, 6)])
    a["marlin_find"] = detections(a, [("q1", 1, 2, 0.7)])
    b["ground_truth"] = detections(b, [("jump", 1, 3)])
    b["marlin_events"] = fo.TemporalDetections(detections=[])
    b["gt_queries"] = detections(b, [("q3", 1, 3)])
    b["marlin_find"] = detections(b, [("q3", 1, 3, 0.9)])
    a.save()
    b.save()
    return dataset


def evaluate(dataset, **params):
    result = foo.execute_operator("@marlin/marlin/evaluate", dict(dataset=dataset, params=params))
    result.raise_exceptions()
    return result.result


def test_events_mode_numbers_fields_and_views(eval_dataset):
    summary = evaluate(eval_dataset, pred_field="marlin_events", gt_field="ground_truth", mode="events",
                       eval_key="ev")
    metrics = summary["metrics"]
    # hand-computed: video a P@t = [2/3, 2/3, 2/3, 1/3], R@t = [1, 1, 1, .5]; video b has no prediction
    assert metrics["precision"] == pytest.approx(100 * (7 / 12) / 2)
    assert metrics["recall"] == pytest.approx(100 * 0.875 / 2)
    assert metrics["f1"] == pytest.approx(100 * 0.7 / 2, abs=1e-6)
    assert eval_dataset.sum("ev_tp") == 2 and eval_dataset.sum("ev_fp") == 1 and eval_dataset.sum("ev_fn") == 1
    a, b = eval_dataset.sort_by("filepath")
    # the matching is written on the evaluation's own copy; the user's labels are only read
    assert [d.ev for d in a["ev_predictions"].detections] == ["tp", "tp", "fp"]
    assert [d.label for d in a["ev_predictions"].detections] == ["door opens", "walking", "sit"]
    assert not any(d.has_field("ev") for d in a["marlin_events"].detections)
    assert a["ev_iou"] == pytest.approx((1 + 0.75) / 2) and b["ev_iou"] == 0
    assert "mAP" in metrics
    results = eval_dataset.load_evaluation_results("ev")
    assert results.metrics()["precision"] == pytest.approx(2 / 3)
    assert "ev" in summary["table"] and "precision" in summary["table"]
    worst = eval_dataset.load_saved_view("ev_worst")
    assert worst.first().id == b.id
    assert len(eval_dataset.load_saved_view("ev_false_positives")) == 1
    assert len(eval_dataset.load_saved_view("ev_misses")) == 1
    assert eval_dataset.get_run_info("ev_marlin").config.metrics["recall"] == pytest.approx(43.75)


def raw_labels(dataset, fields=("marlin_events", "ground_truth", "marlin_find", "gt_queries")):
    """The stored documents of the label fields, byte for byte (ids, texts, attributes)."""
    projection = {field: True for field in fields}
    return {doc["_id"]: doc for doc in dataset._sample_collection.find({}, projection)}


def test_user_labels_are_never_written(eval_dataset):
    before = raw_labels(eval_dataset)
    evaluate(eval_dataset, pred_field="marlin_events", gt_field="ground_truth", mode="events", eval_key="ev")
    evaluate(eval_dataset, pred_field="marlin_find", gt_field="gt_queries", mode="grounding", eval_key="gr")
    evaluate(eval_dataset, pred_field="marlin_events", gt_field="ground_truth", mode="events", eval_key="ev")
    assert raw_labels(eval_dataset) == before


@pytest.mark.parametrize("params, where", [
    (dict(iou=2.0), "iou"), (dict(iou=-1), "iou"), (dict(iou=0), "iou"), (dict(mode="boxes"), "mode"),
    (dict(pred_field="nope"), "pred_field"), (dict(gt_field="marlin_events"), "gt_field"),
    (dict(eval_key="a.b"), "eval_key"), (dict(eval_key="marlin"), "eval_key"),
])
def test_bad_parameters_are_refused_before_anything_is_written(eval_dataset, params, where):
    before = raw_labels(eval_dataset)
    fields = set(eval_dataset.get_field_schema())
    base = dict(pred_field="marlin_events", gt_field="ground_truth", mode="events", eval_key="ev")
    eval_dataset.add_sample_field("marlin_predictions", fo.StringField)  # a user field named like a copy
    with pytest.raises(ExecutionError, match=where):
        evaluate(eval_dataset, **dict(base, **params))
    assert raw_labels(eval_dataset) == before
    assert set(eval_dataset.get_field_schema()) == fields | {"marlin_predictions"}


def test_grounding_mode_pairs_by_query(eval_dataset):
    summary = evaluate(eval_dataset, pred_field="marlin_find", gt_field="gt_queries", mode="grounding",
                       eval_key="gr")
    metrics = summary["metrics"]
    assert metrics["R1@0.3"] == pytest.approx(200 / 3)
    assert metrics["R1@0.5"] == pytest.approx(200 / 3)  # IoU exactly 0.5 counts (inclusive, as TimeLens)
    assert metrics["R1@0.7"] == pytest.approx(100 / 3)
    assert metrics["mIoU"] == pytest.approx(50.0)
    a, b = eval_dataset.sort_by("filepath")
    assert a["gr_iou"] == pytest.approx(0.25) and b["gr_iou"] == pytest.approx(1.0)


def test_review_operator_opens_a_saved_view(eval_dataset):
    evaluate(eval_dataset, eval_key="ev")
    result = foo.execute_operator("@marlin/marlin/review_errors",
                                  dict(dataset=eval_dataset, params=dict(eval_key="ev", kind="misses")))
    result.raise_exceptions()
    assert result.result == {"view": "ev_misses"}


def test_import_activitynet_and_charades(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    anet = tmp_path / "gt.json"
    anet.write_text(json.dumps({
        "vid_a": {"duration": 10.0, "timestamps": [[0, 2.5], [4, 6]], "sentences": ["a door opens", "walks"]},
        "vid_zzz": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["elsewhere"]},
    }))
    result = foo.execute_operator("@marlin/marlin/import_annotations",
                                  dict(dataset=dataset, params=dict(path=str(anet), format="activitynet")))
    result.raise_exceptions()
    assert result.result["imported"] == 1 and result.result["unmatched_ids"] == ["vid_zzz"]
    a = dataset.sort_by("filepath").first()
    assert [d.label for d in a["ground_truth"].detections] == ["a door opens", "walks"]
    assert a["ground_truth"].detections[0].support == [1, 26]

    sta = tmp_path / "gt.txt"
    sta.write_text("vid_b 1.0 3.0##a person jumps\nvid_b 5 7##the person sits\n")
    result = foo.execute_operator("@marlin/marlin/import_annotations", dict(
        dataset=dataset, params=dict(path=str(sta), format="charades", gt_field="queries")))
    result.raise_exceptions()
    b = dataset.sort_by("filepath").last()
    assert [d.label for d in b["queries"].detections] == ["a person jumps", "the person sits"]


def test_malformed_file_imports_nothing(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    sta = tmp_path / "bad.txt"
    sta.write_text("vid_a 1.0 3.0##fine\nvid_b one 3.0##bad start\n")
    with pytest.raises(ExecutionError, match=f"{sta}:2"):
        foo.execute_operator("@marlin/marlin/import_annotations",
                             dict(dataset=dataset, params=dict(path=str(sta), format="charades")))
    assert not dataset.has_sample_field("ground_truth")


def test_the_evaluation_copies_are_unchecked_in_the_sidebar(eval_dataset):
    """The copies FiftyOne's matcher needs are not drawn beside the user's labels on every tile."""
    evaluate(eval_dataset, pred_field="marlin_events", gt_field="ground_truth", mode="events", eval_key="ev")
    eval_dataset.reload()
    active = eval_dataset.app_config.active_fields
    assert active.exclude is True and {"ev_predictions", "ev_ground_truth"} <= set(active.paths)
    assert "marlin_events" not in active.paths and "ground_truth" not in active.paths
    # an exclusion list checks every path it does not name: the evaluation's counts and IoU, ids, file paths and
    # metadata stay unchecked as FiftyOne leaves them
    assert {"ev_tp", "ev_fp", "ev_fn", "ev_iou", "id", "filepath", "metadata.duration"} <= set(active.paths)


def test_one_explained_metrics_table_with_samples_without_ground_truth(eval_dataset, ten_second_videos):
    eval_dataset.add_sample(fo.Sample(filepath=str(ten_second_videos[0])))  # a third sample, no ground truth
    eval_dataset.compute_metadata()
    from operators.evaluate import metrics_markdown

    summary = evaluate(eval_dataset, pred_field="marlin_events", gt_field="ground_truth", mode="events")
    assert summary["samples"] == 2 and summary["samples_without_ground_truth"] == 1
    table = metrics_markdown(summary)
    assert "| Metric | Value | What it counts |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert all(line.rstrip(" |").split("|")[-1].strip() for line in rows), table  # every row says what it counts
    assert "| samples without ground truth | 1 |" in table
    assert "fiftyone_precision" in table and "| precision |" in table
