"""Per-label ownership, foreign fields, failed runs and the model's identity, through FiftyOne's executor.

Each test is a reproduction from issue 24 on real FiftyOne + MongoDB, real videos and the tiny trained
checkpoint: what a user made or corrected survives every rerun; a field holding someone else's labels is
written only with ``overwrite``; a run in which every sample failed does not replace the record of the
labels; the same weights under another name or path skip the samples they already did.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionContext, ExecutionError

from operators.adapters.labels import marlin_owns
from operators.run.identity import weights_identity
from operators.run.runs import run_history
from operators.run.validation import problems
from vllm_server import free_port

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"
HUB_ID = "NemoStation/Marlin-2B"


def caption(dataset, model, **params):
    return foo.get_operator(CAPTION)(dataset, model=str(model), **params)


def find(dataset, model, queries, **params):
    return foo.get_operator(FIND)(dataset, queries, model=str(model), **params)


@pytest.fixture
def colour_dataset(dataset, color_videos):
    dataset.add_samples([fo.Sample(filepath=str(color_videos[c]), colour=c) for c in ("red", "blue")])
    return dataset


def _by_colour(dataset, colour):
    return dataset.match(fo.ViewField("colour") == colour).first()


def _stored(dataset) -> list:
    return list(dataset._sample_collection.find({}, sort=[("_id", 1)]))


def test_user_labels_inside_marlin_fields_survive_reruns(colour_dataset, trained_model_dir):
    """Issue 24 #2: a hand-added event, a corrected Marlin event and an edited scene outlive two re-captions."""
    dataset = colour_dataset
    assert caption(dataset, trained_model_dir)["done"] == 2
    red = _by_colour(dataset, "red")
    events = red["marlin_events"]
    assert len(events.detections) == 2 and all(marlin_owns(d) for d in events.detections)
    mine = fo.TemporalDetection(label="my own event", support=[1, 3], checked=True)
    events.detections.append(mine)
    corrected = events.detections[0]
    corrected.label = "a red light, corrected by me"
    red.save()
    blue = _by_colour(dataset, "blue")
    blue["marlin_scene"] = "my better scene"
    blue.save()
    marlin_ids = [d.id for d in events.detections[1:2]]

    for overwrite in (False, True):
        outcome = caption(dataset, trained_model_dir, max_new_tokens=200, overwrite=overwrite)
        assert outcome["done"] == 2 and outcome["status"] == "completed", outcome
        red = _by_colour(dataset, "red")
        labels = {d.id: d for d in red["marlin_events"].detections}
        assert labels[mine.id].label == "my own event" and labels[mine.id].checked is True
        assert labels[corrected.id].label == "a red light, corrected by me"
        assert not set(marlin_ids) & set(labels), "Marlin's own labels of other settings are replaced"
        owned = [d for d in labels.values() if marlin_owns(d)]
        assert len(owned) == 2 and len(labels) == 4, [d.label for d in labels.values()]
        marlin_ids = [d.id for d in owned]
        blue = _by_colour(dataset, "blue")
        assert blue["marlin_scene"] == "my better scene"
        assert blue["marlin_caption"] and len(blue["marlin_events"].detections) == 2


def test_a_corrected_find_answer_is_kept_and_not_asked_again(colour_dataset, trained_model_dir):
    dataset = colour_dataset
    find(dataset, trained_model_dir, ["red light"])
    red = _by_colour(dataset, "red")
    (answer,) = red["marlin_find"].detections
    answer.support = [answer.support[0], answer.support[1] + 1]  # the user moved the end by a frame
    red.save()
    outcome = find(dataset, trained_model_dir, ["red light"], max_new_tokens=50)
    assert outcome["untouched"] == 1, outcome  # red: the user's answer to that query stays, not asked again
    assert [d.id for d in _by_colour(dataset, "red")["marlin_find"].detections] == [answer.id]
    find(dataset, trained_model_dir, ["red light"], max_new_tokens=50, overwrite=True)
    detections = _by_colour(dataset, "red")["marlin_find"].detections
    assert answer.id in [d.id for d in detections] and len(detections) == 2
    assert [d.support for d in detections if d.id == answer.id] == [answer.support]


@pytest.mark.parametrize("operation, params, where", [
    ("find", dict(queries=["red light"], find_field="ground_truth"), "find_field"),
    ("caption", dict(events_field="ground_truth"), "events_field"),
    ("caption", dict(scene_field="notes"), "scene_field"),
])
def test_a_field_holding_someone_elses_labels_needs_overwrite(operation, params, where, colour_dataset,
                                                              trained_model_dir):
    """Issue 24 #3: refused before any work, the form marks it, and overwrite adds Marlin's labels beside."""
    dataset = colour_dataset
    for sample in dataset:
        sample["ground_truth"] = fo.TemporalDetections(detections=[
            fo.TemporalDetection(label="red light", support=[2, 6], annotator="me")])
        sample["notes"] = "my notes"
        sample.save()
    before = _stored(dataset)
    assert "Marlin did not make" in problems(operation, params, dataset)[where]
    with pytest.raises(ExecutionError, match=where):
        foo.execute_operator(f"@marlin/marlin/{operation}",
                             dict(dataset=dataset, params=dict(model=str(trained_model_dir), **params)))
    assert _stored(dataset) == before and run_history(dataset) == []

    ctx = ExecutionContext(request_params=dict(dataset_name=dataset.name, params=params),
                           operator_uri=f"@marlin/marlin/{operation}")
    form = foo.get_operator(f"@marlin/marlin/{operation}").resolve_type(ctx, "inputs").to_json()
    marked = form["type"]["properties"]["advanced"]["type"]["properties"][where]
    assert marked["invalid"] is True and "only with overwrite" in marked["error_message"]

    outcome = foo.get_operator(f"@marlin/marlin/{operation}")(dataset, model=str(trained_model_dir),
                                                             overwrite=True, **params)
    assert outcome["done"] == 2, outcome
    for doc, old in zip(_stored(dataset), before):
        assert [d for d in doc["ground_truth"]["detections"] if "marlin_hash" not in d] == \
            old["ground_truth"]["detections"]
        assert doc["notes"] == "my notes"


def test_a_run_in_which_every_sample_failed_keeps_the_record_of_the_labels(colour_dataset, trained_model_dir):
    """Issue 24 #5: a dead server fails every sample: the run is ``failed``, get_run_info still names the labels'."""
    dataset = colour_dataset
    caption(dataset, trained_model_dir)
    port = free_port()
    outcome = caption(dataset, f"openai://127.0.0.1:{port}/v1/marlin-tiny", overwrite=True)
    assert outcome["failed"] == 2 and outcome["done"] == 0 and outcome["status"] == "failed"
    records = run_history(dataset)
    assert [r["status"] for r in records] == ["completed", "failed"]
    assert "every sample failed (2)" in records[-1]["error"] and "unavailable" in records[-1]["error"]
    dataset.reload()
    config = dataset.get_run_info("marlin_caption").config
    assert config.settings["model"] == str(trained_model_dir) and config.status == "completed"
    assert all(len(s["marlin_events"].detections) == 2 for s in dataset)


def _fake_hub_cache(root, weights) -> str:
    """A Hugging Face cache holding ``weights`` as ``HUB_ID``: snapshot links to blobs named by SHA-256."""
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for path in weights.iterdir():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, repo / "blobs" / digest)
        (snapshot / path.name).symlink_to(os.path.relpath(repo / "blobs" / digest, snapshot))
    return str(root)


def test_the_same_weights_under_another_name_skip_done_samples(colour_dataset, trained_model_dir,
                                                               random_model_dir, tmp_path, monkeypatch):
    """Issue 24 #13: a link, a copy and the hub id (cached) of the same weights skip; other weights redo."""
    dataset = colour_dataset
    assert caption(dataset, trained_model_dir)["done"] == 2
    link = tmp_path / "link"
    link.symlink_to(trained_model_dir, target_is_directory=True)
    copy = tmp_path / "copy"
    shutil.copytree(trained_model_dir, copy)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", _fake_hub_cache(tmp_path / "hub", trained_model_dir))
    assert weights_identity(HUB_ID) == weights_identity(str(trained_model_dir)) == weights_identity(str(copy))
    assert weights_identity(str(random_model_dir)) != weights_identity(str(trained_model_dir))
    for model in (link, copy, HUB_ID):
        outcome = caption(dataset, model)
        assert outcome["skipped"] == 2 and outcome["done"] == 0, (model, outcome)
    assert caption(dataset, random_model_dir)["done"] == 2
