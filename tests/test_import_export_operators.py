"""Ground-truth import safety and label export through FiftyOne's executor, on the local MongoDB.

Import: BOM files, segments past the end, an existing field (refused without overwrite, nothing
written), empty path, matched / unmatched ids in the result. Export: Marlin's own labels (tiny
trained model through the caption / find operators) written in each format and imported back.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionError, execute_or_delegate_operator

from app_browser import app_server
from marlin_core.formats.annotations import load_timelens
from media import make_video

IMPORT = "@marlin/marlin/import_annotations"
EXPORT = "@marlin/marlin/export_annotations"


@pytest.fixture(scope="module")
def ten_second_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("import-videos")
    return [make_video(root / f"{name}.mp4", size="64x48", fps=10, seconds=10) for name in ("vid_a", "vid_b")]


def run(uri, dataset, **params):
    result = foo.execute_operator(uri, dict(dataset=dataset, params=params))
    result.raise_exceptions()
    return result.result


def labels_of(dataset, field):
    """``{file: [(label, support, start_s, end_s)]}``: what a user sees, ids left out."""
    return {s.filepath: None if s[field] is None else [(d.label, list(d.support), d.start_s, d.end_s)
                                                       for d in s[field].detections]
            for s in dataset.sort_by("filepath")}


def test_bom_charades_file_matches_its_first_id(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + b"vid_a 1.0 3.0##a person jumps\nghost 0 1##nobody\n")
    result = run(IMPORT, dataset, path=str(path), format="charades")
    assert result["matched_ids"] == ["vid_a"] and result["unmatched_ids"] == ["ghost"]
    assert result["imported"] == 1 and result["warnings"] == []
    assert dataset.sort_by("filepath").first()["ground_truth"].detections[0].label == "a person jumps"


def test_segments_past_the_end_are_imported_with_a_warning(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    path = tmp_path / "late.json"
    path.write_text(json.dumps({"vid_b": {"duration": 30.0, "spans": [[2, 4], [30, 30.5]],
                                          "queries": ["early", "after the end"]}}))
    result = run(IMPORT, dataset, path=str(path), format="timelens", gt_field="gt")
    assert result["imported"] == 1 and result["warning_count"] == 1
    assert "vid_b" in result["warnings"][0] and "end after its 10.00 s" in result["warnings"][0]
    late = dataset.sort_by("filepath").last()["gt"].detections[1]
    assert (late.start_s, late.end_s) == (30.0, 30.5), "times kept as written"
    assert late.support == [100, 100], "frames clamped to the last one"


def test_existing_labels_need_overwrite_and_nothing_is_written_without(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    first = tmp_path / "first.txt"
    first.write_text("vid_a 1 2##mine\n")
    run(IMPORT, dataset, path=str(first), format="charades")
    before = labels_of(dataset, "ground_truth")
    ids_before = [d.id for d in dataset.sort_by("filepath").first()["ground_truth"].detections]

    second = tmp_path / "second.txt"
    second.write_text("vid_a 5 6##theirs\nvid_b 0 1##new\n")
    with pytest.raises(ExecutionError, match="Replace existing labels"):
        run(IMPORT, dataset, path=str(second), format="charades")  # the form marks the field invalid
    from operators.import_annotations import ImportRefused, import_annotations

    with pytest.raises(ImportRefused, match="1 matched sample.*already have labels in 'ground_truth'"):
        import_annotations(dataset.view(), str(second), "charades")  # the SDK function refuses too
    assert labels_of(dataset, "ground_truth") == before, "nothing written, not even to vid_b"
    assert [d.id for d in dataset.sort_by("filepath").first()["ground_truth"].detections] == ids_before

    result = run(IMPORT, dataset, path=str(second), format="charades", overwrite=True)
    assert result["imported"] == 2 and result["replaced"] == 1
    assert [d.label for d in dataset.sort_by("filepath").first()["ground_truth"].detections] == ["theirs"]


def test_a_field_of_another_type_is_refused(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    dataset.set_values("notes", ["keep me", "and me"])
    path = tmp_path / "gt.txt"
    path.write_text("vid_a 1 2##x\n")
    with pytest.raises(ExecutionError, match="exists with another type"):
        run(IMPORT, dataset, path=str(path), format="charades", gt_field="notes", overwrite=True)
    assert sorted(dataset.values("notes")) == ["and me", "keep me"]


@pytest.mark.parametrize("path", ["", "   "])
def test_empty_path_is_one_clear_line(dataset, ten_second_videos, path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    with pytest.raises(ExecutionError) as caught:
        run(IMPORT, dataset, path=path, format="charades")
    message = str(caught.value)
    assert "Enter the path of the annotation file" in message and "\n" not in message.strip()
    assert "IsADirectoryError" not in message
    from marlin_core.formats.annotations import AnnotationFormatError
    from operators.import_annotations import import_annotations

    with pytest.raises(AnnotationFormatError) as direct:  # the SDK function, past the form
        import_annotations(dataset.view(), path, "charades")
    assert str(direct.value) == "no annotation file given: enter the path of the file to import (nothing imported)"


def test_a_folder_path_is_a_clear_error(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    with pytest.raises(ExecutionError, match="is a folder, not an annotation file"):
        run(IMPORT, dataset, path=str(tmp_path), format="activitynet")


def test_result_panels_render_offline():
    """No CodeView (its editor loads from a CDN and never renders offline)."""
    for uri in (IMPORT, EXPORT):
        rendered = json.dumps(foo.get_operator(uri).resolve_output(None).to_json())
        assert "CodeView" not in rendered and "imported" in rendered or "segments" in rendered


def test_caption_labels_export_and_import_back(dataset, trained_model_dir, color_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(color_videos[c])) for c in ("red", "blue")])
    run("@marlin/marlin/caption", dataset, model=str(trained_model_dir))
    written = run(EXPORT, dataset, field="marlin_events", format="activitynet", path=str(tmp_path / "events.json"))
    assert written["videos"] == 2 and written["segments"] > 0 and written["skipped"] == 0
    run(IMPORT, dataset, path=written["path"], format="activitynet", gt_field="events_back")
    ours, back = labels_of(dataset, "marlin_events"), labels_of(dataset, "events_back")
    assert back == ours

    submission = run(EXPORT, dataset, field="marlin_events", format="densevid", path=str(tmp_path / "sub.json"))
    results = json.loads((tmp_path / "sub.json").read_text())["results"]
    assert submission["videos"] == 2 and set(results) == {"red", "blue"}
    red = dataset.match(fo.ViewField("filepath").ends_with("red.mp4")).first()
    assert results["red"] == [{"sentence": d.label, "timestamp": [d.start_s, d.end_s]}
                              for d in red["marlin_events"].detections]
    with pytest.raises(ExecutionError, match="exists"):
        run(EXPORT, dataset, field="marlin_events", format="densevid", path=str(tmp_path / "sub.json"))


def test_find_answers_export_as_grounding_files(dataset, trained_model_dir, color_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(color_videos[c])) for c in ("red", "blue")])
    run("@marlin/marlin/find", dataset, model=str(trained_model_dir), queries=["red light", "blue sky"])
    timelens = run(EXPORT, dataset, field="marlin_find", format="timelens", path=str(tmp_path / "tl.json"))
    charades = run(EXPORT, dataset, field="marlin_find", format="charades", path=str(tmp_path / "sta.txt"))
    assert timelens["segments"] == charades["segments"] > 0
    durations = {name: a.duration_s for name, a in load_timelens(tmp_path / "tl.json").items()}
    for sample in dataset:
        assert durations[sample.filepath.rsplit("/", 1)[1][:-4]] == pytest.approx(sample.metadata.duration)
    for fmt, path in (("timelens", "tl.json"), ("charades", "sta.txt")):
        run(IMPORT, dataset, path=str(tmp_path / path), format=fmt, gt_field=f"back_{fmt}")
        assert labels_of(dataset, f"back_{fmt}") == labels_of(dataset, "marlin_find")


# --- a bad file imports nothing: bounds checked on the whole file before any write ---


def _activitynet(segments_by_video: dict[str, list[tuple[float, float, str]]]) -> str:
    return json.dumps({video_id: {"duration": 10.0, "timestamps": [[s, e] for s, e, _ in segments],
                                  "sentences": [text for _, _, text in segments]}
                       for video_id, segments in segments_by_video.items()})


def test_a_video_with_too_many_segments_imports_nothing(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    path = tmp_path / "crowded.json"
    many = [(k * 0.0008, k * 0.0008 + 0.5, "e") for k in range(11_000)]
    path.write_text(_activitynet({"vid_a": [(1.0, 2.0, "one event")], "vid_b": many}))
    with pytest.raises(ExecutionError) as caught:
        run(IMPORT, dataset, path=str(path), format="activitynet")
    assert "video 'vid_b': 11000 segments, more than the 10000" in str(caught.value)
    assert not dataset.has_sample_field("ground_truth") or dataset.count("ground_truth.detections") == 0


def test_labels_too_large_for_a_sample_import_nothing_and_keep_what_was_there(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    path = tmp_path / "first.json"
    path.write_text(_activitynet({"vid_a": [(1.0, 2.0, "before")], "vid_b": [(1.0, 2.0, "before")]}))
    run(IMPORT, dataset, path=str(path), format="activitynet")
    before = labels_of(dataset, "ground_truth")
    # 2,000 segments of 5 kB sentences: within the segment bound, ~10 MB as stored
    wordy = [(1.0, 2.0, "x" * 5000)] * 2000
    path = tmp_path / "wordy.json"
    path.write_text(_activitynet({"vid_a": [(3.0, 4.0, "after")], "vid_b": wordy}))
    with pytest.raises(ExecutionError) as caught:
        run(IMPORT, dataset, path=str(path), format="activitynet", overwrite=True)
    assert "nothing imported: video 'vid_b'" in str(caught.value) and "MB of labels" in str(caught.value)
    assert labels_of(dataset, "ground_truth") == before, "vid_a was not written either"


def test_deeply_nested_json_is_one_clear_error(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    path = tmp_path / "nested.json"
    path.write_text('{"vid_a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ExecutionError) as caught:
        run(IMPORT, dataset, path=str(path), format="activitynet")
    assert "nested deeper than Python can read" in str(caught.value)
    assert "RecursionError" not in str(caught.value).replace("nested deeper", "")


def test_import_and_export_are_callable_from_python(dataset, ten_second_videos, tmp_path):
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    path = tmp_path / "gt.json"
    path.write_text(_activitynet({"vid_a": [(1.0, 2.0, "a person waves")]}))
    imported = foo.get_operator(IMPORT)(dataset, path=str(path), format="activitynet")
    assert imported["imported"] == 1
    out = tmp_path / "out.json"
    exported = foo.get_operator(EXPORT)(dataset, field="ground_truth", path=str(out), format="activitynet")
    assert json.loads(out.read_text())["vid_a"]["sentences"] == ["a person waves"], exported


def test_an_export_from_the_app_is_offered_as_a_browser_download(ten_second_videos, tmp_path):
    """As the App runs it: the file is written, and FiftyOne's browser_download gets a URL the App server serves."""
    dataset = fo.Dataset(f"marlin-export-{uuid.uuid4().hex[:8]}", persistent=True)  # the App server reads it
    try:
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
        gt = tmp_path / "gt.json"
        gt.write_text(_activitynet({"vid_a": [(1.0, 2.0, "a person waves")]}))
        foo.get_operator(IMPORT)(dataset, path=str(gt), format="activitynet")
        out = tmp_path / "for download.json"
        request = dict(dataset_name=dataset.name, view=dataset.view()._serialize(), operator_uri=EXPORT,
                       current_sample=None, params=dict(field="ground_truth", path=str(out), format="activitynet"))
        result = asyncio.run(execute_or_delegate_operator(EXPORT, request))
        result.raise_exceptions()
        (download,) = [r for r in result.to_json()["executor"]["requests"] if r["operator_uri"] == "browser_download"]
        assert download["params"]["filename"] == "for download.json"
        with app_server(tmp_path / "server.log") as url:
            served = urllib.request.urlopen(url + download["params"]["url"], timeout=30).read()
        assert served == out.read_bytes() and b"a person waves" in served
        # an SDK call (no App listening) asks for no download
        sdk = foo.execute_operator(EXPORT, dict(dataset=dataset, params=dict(
            field="ground_truth", path=str(tmp_path / "sdk.json"), format="activitynet")))
        assert not [r for r in (sdk.to_json()["executor"] or {}).get("requests", [])
                    if r["operator_uri"] == "browser_download"]
    finally:
        dataset.delete()


def test_an_export_from_search_clips_exports_the_videos_behind_them(dataset, ten_second_videos, tmp_path):
    """After a search the App's current view is a clips view, which drops the videos' other temporal fields;
    exporting ``marlin_events`` from it once failed with "not a TemporalDetections field"."""
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in ten_second_videos])
    dataset.compute_metadata()
    for sample, label in zip(dataset.sort_by("filepath"), ("a person waves", "a dog runs")):
        sample["marlin_events"] = fo.TemporalDetections(detections=[
            fo.TemporalDetection.from_timestamps([1.0, 2.0], label=label, sample=sample)])
        sample.save()
    first = dataset.sort_by("filepath").first()
    first["marlin_search"] = fo.TemporalDetections(detections=[
        fo.TemporalDetection.from_timestamps([1.0, 2.0], label="waving", sample=first),
        fo.TemporalDetection.from_timestamps([4.0, 5.0], label="waving", sample=first)])
    first.save()
    clips = dataset.to_clips("marlin_search")
    assert not clips.has_sample_field("marlin_events") and len(clips) == 2
    out = tmp_path / "from-clips.json"
    result = foo.execute_operator(EXPORT, dict(dataset=dataset, view=clips, params=dict(
        field="marlin_events", path=str(out), format="activitynet")))
    result.raise_exceptions()
    assert result.result["videos"] == 1 and result.result["segments"] == 1
    assert json.loads(out.read_text())["vid_a"]["sentences"] == ["a person waves"]
    # the search field itself exports as the videos' TemporalDetections, not the clips' Classifications
    searched = foo.execute_operator(EXPORT, dict(dataset=dataset, view=clips, params=dict(
        field="marlin_search", path=str(tmp_path / "search.json"), format="activitynet")))
    searched.raise_exceptions()
    assert searched.result["segments"] == 2
