"""Marlin as a FiftyOne remote zoo model: registered from a folder or a served archive, run by ``apply_model``.

The labels ``apply_model`` writes are compared with the caption / find operators' on the same samples
(tiny trained checkpoint, real FiftyOne on the local MongoDB, real videos and a broken one).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.zoo as foz
import pytest

from conftest import REPO

MODEL = "NemoStation/Marlin-2B"
SOURCE_NAME = "fiftyone-marlin"  # manifest.json's "name": the folder FiftyOne keeps the source in


def source_files() -> list[str]:
    """The repo's files as a clone has them (tracked and new, not ignored): what a source download holds."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], check=True,
                         capture_output=True, text=True).stdout
    return [name for name in out.splitlines() if (REPO / name).is_file()]


def copy_source(zoo_dir: Path) -> None:
    """Install the source from a local folder: a copy of it under the manifest's name in the zoo folder."""
    source = zoo_dir / SOURCE_NAME
    for name in source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)


@pytest.fixture
def zoo_dir(tmp_path):
    """A model zoo folder of its own for the test (FiftyOne reads ``fo.config.model_zoo_dir`` on each call)."""
    previous = fo.config.model_zoo_dir
    fo.config.model_zoo_dir = str(tmp_path / "zoo")
    yield Path(fo.config.model_zoo_dir)
    fo.config.model_zoo_dir = previous


def install_weights(weights: Path) -> Path:
    """Link local weights where FiftyOne looks for the downloaded model, so nothing is downloaded."""
    model_path = Path(foz.get_zoo_model(MODEL).get_path_in_dir(fo.config.model_zoo_dir))
    model_path.symlink_to(weights, target_is_directory=True)
    return model_path


def add_videos(dataset, paths) -> None:
    dataset.add_samples([fo.Sample(filepath=str(path)) for path in paths])


def labels_by_file(dataset, field) -> dict:
    """``{file name: [(label, support, confidence, start_s, end_s, settings)]}`` of a TemporalDetections field."""
    found = {}
    for sample in dataset:
        labels = sample[field] if sample.has_field(field) else None
        if labels is None:
            continue
        found[Path(sample.filepath).name] = [
            (d.label, list(d.support), d.confidence) + tuple(
                d.get_field(name) if d.has_field(name) else None for name in ("start_s", "end_s", "marlin_settings"))
            for d in labels.detections
        ]
    return found


def test_local_source_apply_model_caption_matches_the_operator(
    zoo_dir, dataset, trained_model_dir, color_videos, broken
):
    """Source copied into the zoo folder; apply_model on a view with a broken video; same labels as the operator."""
    copy_source(zoo_dir)
    assert MODEL in foz.list_zoo_models()
    model_path = install_weights(trained_model_dir)

    model = foz.load_zoo_model(MODEL, operation="caption", batch_size=2, cache=False)
    assert model.media_type == "video" and model.settings.batch_size == 2
    # not a video (FiftyOne's reader fails) and garbage frames behind a valid header (Marlin's decoder fails)
    add_videos(dataset, [color_videos["red"], broken["text"], broken["garbage"], color_videos["blue"]])
    bad_ids = []
    for sample in dataset.match(fo.ViewField("filepath").is_in([str(broken["text"]), str(broken["garbage"])])):
        sample["marlin_events"] = fo.TemporalDetections(detections=[fo.TemporalDetection(label="mine", support=[1, 2])])
        sample.save()
        bad_ids.append(sample.id)

    garbage_only = dataset.select(bad_ids[1:])
    with pytest.raises(Exception, match="garbage.mp4"):
        garbage_only.apply_model(model, label_field="marlin_events", skip_failures=False)
    dataset.apply_model(model, label_field="marlin_events", batch_size=2)  # skip_failures=True: the default

    for sample_id in bad_ids:
        assert dataset[sample_id]["marlin_events"].detections[0].label == "mine", "a failed video keeps its labels"
    operator_dataset = fo.Dataset()
    try:
        add_videos(operator_dataset, [color_videos["red"], color_videos["blue"]])
        result = foo.execute_operator("@marlin/marlin/caption",
                                      dict(dataset=operator_dataset, params=dict(model=str(model_path))))
        result.raise_exceptions()
        zoo_labels = labels_by_file(dataset, "marlin_events")
        operator_labels = labels_by_file(operator_dataset, "marlin_events")
        assert set(operator_labels) == {"red.mp4", "blue.mp4"}
        assert {name: zoo_labels[name] for name in operator_labels} == operator_labels
        fingerprint = operator_dataset.first()["marlin_events"].marlin_settings
        assert dataset.first()["marlin_events"].marlin_settings == fingerprint
        assert dataset.first()["marlin_events"].format_ok is True
    finally:
        operator_dataset.delete()

    # several videos per generate call (predict_all): same labels as one at a time; confidences equal up to
    # left padding's float noise (~1e-7, fiftyone-facts.md)
    batched = model.predict_all([str(color_videos["red"]), str(color_videos["blue"])])
    for labels, name in zip(batched, ("red.mp4", "blue.mp4")):
        assert [(d.label, d.support) for d in labels.detections] == [(d[0], d[1]) for d in zoo_labels[name]]
        assert [d.confidence for d in labels.detections] == pytest.approx([d[2] for d in zoo_labels[name]],
                                                                          abs=1e-6)

    clips = dataset.exists("marlin_events").to_clips("marlin_events")
    with pytest.raises(ValueError, match="clip views are not supported"):
        clips.apply_model(model, label_field="clip_events", skip_failures=False)


def test_served_source_apply_model_find_writes_the_operators_fields(
    zoo_dir, tmp_path, dataset, trained_model_dir, color_videos
):
    """Source registered from an archive served over http; find with output='fields' = the operator's two fields."""
    archive = tmp_path / "serve" / "fiftyone-marlin.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in source_files():
            zipped.write(REPO / name, f"fiftyone-marlin-main/{name}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    try:
        foz.register_zoo_model_source(url)
    finally:
        server.shutdown()
    assert url in foz.list_zoo_model_sources()
    assert (zoo_dir / SOURCE_NAME / "manifest.json").is_file()
    model_path = install_weights(trained_model_dir)

    queries = ["red light", "blue sky", "red light"]
    model = foz.load_zoo_model(MODEL, operation="find", queries=queries, output="fields", cache=False)
    assert model.settings.queries == ["red light", "blue sky"]
    add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    dataset.apply_model(model, label_field="marlin")

    operator_dataset = fo.Dataset()
    try:
        add_videos(operator_dataset, [color_videos["red"], color_videos["blue"]])
        result = foo.execute_operator("@marlin/marlin/find", dict(
            dataset=operator_dataset, params=dict(model=str(model_path), queries=queries)))
        result.raise_exceptions()
        assert labels_by_file(dataset, "marlin_find") == labels_by_file(operator_dataset, "marlin_find")
        for ours, theirs in zip(dataset.sort_by("filepath"), operator_dataset.sort_by("filepath")):
            # apply_model stores an empty list as None; the operator writes []: both mean "every query found"
            assert (ours["marlin_find_not_found"] or []) == (theirs["marlin_find_not_found"] or [])
            assert ours["marlin_find"].searched == theirs["marlin_find"].searched
            assert [d.raw for d in ours["marlin_find"].detections] == [d.raw for d in theirs["marlin_find"].detections]
        assert any(sample["marlin_find"].detections for sample in dataset), "the trained model finds its queries"
    finally:
        operator_dataset.delete()


def test_zoo_operator_form_and_parameters(zoo_dir):
    """The App's zoo operator asks the source for its form and tidies the parameters through it."""
    from types import SimpleNamespace

    copy_source(zoo_dir)
    zoo_model = foz.get_zoo_model(MODEL)
    form = zoo_model.resolve_input(SimpleNamespace(params={"operation": "find"})).to_json()
    assert {"operation", "queries", "max_new_tokens", "window_s"} <= set(form["type"]["properties"])
    caption_form = zoo_model.resolve_input(SimpleNamespace(params={})).to_json()
    assert "queries" not in caption_form["type"]["properties"]
    params = {"operation": "find", "queries": ["a dog", " a  dog ", ""], "max_new_tokens": None, "fps": 1.0}
    zoo_model.parse_parameters(SimpleNamespace(params=params), params)
    assert params == {"operation": "find", "queries": ["a dog"], "fps": 1.0}


def test_bad_zoo_parameters_are_refused_before_loading(zoo_dir, trained_model_dir):
    copy_source(zoo_dir)
    install_weights(trained_model_dir)
    with pytest.raises(ValueError, match="needs at least one query"):
        foz.load_zoo_model(MODEL, operation="find", cache=False)
    with pytest.raises(ValueError, match="operation must be one of"):
        foz.load_zoo_model(MODEL, operation="dense", cache=False)
    with pytest.raises(ValueError, match="window_s must be a positive number"):
        foz.load_zoo_model(MODEL, operation="caption", window_s=0, cache=False)


def test_without_weights_or_network_the_error_says_what_to_do(zoo_dir):
    """No checkpoint at the model path and no hub here: one error naming the path and the two ways out."""
    from marlin_core.errors import ModelLoadError

    copy_source(zoo_dir)
    model_path = foz.get_zoo_model(MODEL).get_path_in_dir(fo.config.model_zoo_dir)
    with pytest.raises(ModelLoadError) as caught:
        foz.load_zoo_model(MODEL, operation="caption", cache=False)
    message = str(caught.value)
    assert f"cannot download {MODEL} to {model_path}" in message
    assert "hf auth login" in message and "link local weights to that path" in message


def test_apply_model_records_a_run_and_events_only_labels_are_not_a_caption(
    zoo_dir, dataset, trained_model_dir, color_videos, broken, tmp_path
):
    """Issue 24 #13: apply_model is a run (marlin_runs + FiftyOne run); output='labels' is redone by caption."""
    from operators.run.runs import run_history

    copy_source(zoo_dir)
    install_weights(trained_model_dir)
    add_videos(dataset, [color_videos["red"], color_videos["blue"]])
    model = foz.load_zoo_model(MODEL, operation="caption", cache=False)  # output="labels": the events only
    dataset.apply_model(model, label_field="marlin_events")
    (record,) = run_history(dataset)
    assert record["operation"] == "zoo_caption" and record["status"] == "completed"
    assert record["outcome"]["done"] == 2 and record["model"]["name_or_path"]
    dataset.reload()
    config = dataset.get_run_info("marlin_zoo_caption").config
    assert config.settings["output"] == "labels" and config.settings["weights"].startswith("weights:")
    assert not dataset.has_sample_field("marlin_scene")

    # the operator, given the same weights under another path, does the captions the zoo left half done
    other_path = tmp_path / "same-weights"
    other_path.symlink_to(trained_model_dir, target_is_directory=True)
    outcome = foo.get_operator("@marlin/marlin/caption")(dataset, model=str(other_path))
    assert outcome["done"] == 2 and outcome["skipped"] == 0, outcome
    assert all(sample["marlin_scene"] and sample["marlin_caption"] for sample in dataset)

    # output="fields" writes a whole caption: the operator skips those samples whatever the path
    fields_dataset = fo.Dataset()
    try:
        add_videos(fields_dataset, [color_videos["red"], color_videos["blue"]])
        fields_model = foz.load_zoo_model(MODEL, operation="caption", output="fields", cache=False)
        fields_dataset.apply_model(fields_model, label_field="marlin")
        outcome = foo.get_operator("@marlin/marlin/caption")(fields_dataset, model=str(other_path))
        assert outcome["skipped"] == 2 and outcome["done"] == 0, outcome
    finally:
        fields_dataset.delete()

    # every video failing: the run is failed, and the FiftyOne run still describes the labels
    failing = fo.Dataset()
    try:
        add_videos(failing, [broken["garbage"]])
        failing.apply_model(model, label_field="marlin_events")
        (record,) = run_history(failing)
        assert record["status"] == "failed" and "every sample failed (1)" in record["error"]
        assert "marlin_zoo_caption" not in failing.list_runs()
    finally:
        failing.delete()
