"""Writers of ActivityNet Captions, densevid_eval submissions, TimeLens-Bench and Charades-STA: read back identical."""

import json

import pytest

from marlin_core.formats.annotation_export import (
    EXPORT_FORMATS,
    to_charades_sta,
    to_densevid_submission,
    to_timelens,
    write_annotations,
)
from marlin_core.formats.annotations import (
    Segment,
    VideoAnnotation,
    load_activitynet_captions,
    load_charades_sta,
    load_timelens,
)
from marlin_core.metrics import dense_localization_metrics

ANNOTATIONS = {
    "v_QOlSCBRmfWY": VideoAnnotation("v_QOlSCBRmfWY", 82.73, [
        Segment(0.83, 19.86, "A young woman is seen standing."),
        Segment(17.37, 60.81, "She then dances, spinning — « très bien »."),
    ]),
    "3MSZA": VideoAnnotation("3MSZA", 30.96, [Segment(24.3, 30.4, "person turn a light on.")]),
    "empty": VideoAnnotation("empty", 5.0, []),
}


@pytest.mark.parametrize(("fmt", "load"), [("activitynet", load_activitynet_captions), ("timelens", load_timelens)])
def test_json_formats_read_back_identical(tmp_path, fmt, load):
    path = write_annotations(ANNOTATIONS, tmp_path / f"out-{fmt}.json", fmt)
    assert load(path) == ANNOTATIONS
    assert not path.read_bytes().startswith(b"\xef\xbb\xbf")


def test_charades_reads_back_identical_except_durations(tmp_path):
    path = write_annotations(ANNOTATIONS, tmp_path / "out.txt", "charades")
    assert path.read_text(encoding="utf-8").splitlines()[0] == "v_QOlSCBRmfWY 0.83 19.86##A young woman is seen standing."
    back = load_charades_sta(path)
    # the format has no durations, and a video with no segment has no line
    assert back == {vid: VideoAnnotation(vid, None, a.segments) for vid, a in ANNOTATIONS.items() if a.segments}


def test_densevid_submission_has_what_densevid_eval_reads(tmp_path):
    path = write_annotations(ANNOTATIONS, tmp_path / "submission.json", "densevid")
    submission = json.loads(path.read_text(encoding="utf-8"))
    # densevid_eval evaluate.py: PREDICTION_FIELDS = ['results', 'version', 'external_data']
    assert {"results", "version", "external_data"} <= set(submission)
    assert submission["version"] == "VERSION 1.0"
    results = submission["results"]
    assert results["3MSZA"] == [{"sentence": "person turn a light on.", "timestamp": [24.3, 30.4]}]
    # scored against the ground truth it came from, through our densevid_eval port: perfect localisation
    predictions = {vid: [p["timestamp"] for p in preds] for vid, preds in results.items()}
    ground_truth = {vid: a.spans for vid, a in ANNOTATIONS.items() if a.segments}
    metrics = dense_localization_metrics(predictions, ground_truth)
    assert metrics["precision"] == metrics["recall"] == 100.0


def test_external_data_is_declared():
    assert to_densevid_submission({}, external_data="pretrained on X")["external_data"] == {
        "used": True, "details": "pretrained on X"}


def test_what_a_format_cannot_hold_is_refused(tmp_path):
    with pytest.raises(ValueError, match="need each video's duration"):
        to_timelens({"v": VideoAnnotation("v", None, [])})
    with pytest.raises(ValueError, match="cannot hold whitespace"):
        to_charades_sta({"my video": VideoAnnotation("my video", None, [Segment(0, 1, "q")])})
    with pytest.raises(ValueError, match="line break"):
        to_charades_sta({"v": VideoAnnotation("v", None, [Segment(0, 1, "two\nlines")])})
    with pytest.raises(ValueError, match="format must be one of"):
        write_annotations(ANNOTATIONS, tmp_path / "x", "srt")
    assert set(EXPORT_FORMATS) == {"activitynet", "densevid", "timelens", "charades"}


def test_no_file_is_replaced_or_half_written(tmp_path):
    target = tmp_path / "gt.json"
    target.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_annotations(ANNOTATIONS, target, "activitynet")
    assert target.read_text() == "mine"
    with pytest.raises(ValueError, match="need each video's duration"):
        write_annotations({"v": VideoAnnotation("v", None, [])}, tmp_path / "t.json", "timelens")
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(ValueError, match="no output file given"):
        write_annotations(ANNOTATIONS, "  ", "charades")
    with pytest.raises(ValueError, match="is a folder"):
        write_annotations(ANNOTATIONS, tmp_path, "charades")
    write_annotations(ANNOTATIONS, target, "activitynet", overwrite=True)
    assert load_activitynet_captions(target) == ANNOTATIONS
