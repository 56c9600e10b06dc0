"""``kill -9`` at many moments of caption, find and evaluate: no user label is lost, changed or duplicated.

Each kill is triggered by a state of the database (the run registered, k samples written, the model
loaded, an error written, the evaluation's copies made or renamed...) read by polling MongoDB, not by a
delay. After each kill the state is checked at once, then the run is repeated to its end and checked again:
user data byte-identical, Marlin's labels whole and unduplicated, ids of labels finished before the kill
unchanged, and the killed run's record says ``interrupted``.
"""

from __future__ import annotations

import os
import signal

import fiftyone as fo
import pytest

from safety_data import (CAPTION, EVALUATE, FIND, QUERIES, assert_user_data_kept, caption_state, find_state,
                         make_dataset, raw, statuses)

from zygote import alive, wait_exit, wait_until

CLIPS = 6


def _run_registered(dataset, pid):
    from operators.run.runs import _records

    return lambda: _records().count_documents({"dataset_id": dataset._doc.id, "pid": pid}) > 0


def _model_recorded(dataset, pid):
    from operators.run.runs import _records

    return lambda: _records().count_documents({"dataset_id": dataset._doc.id, "pid": pid,
                                               "model": {"$exists": True}}) > 0


def _count(dataset, query: dict, at_least: int):
    return lambda: dataset._sample_collection.count_documents(query) >= at_least


def _kill_points(dataset, roles, done_query: dict) -> dict:
    """Name -> ``pid -> predicate``: the states of a chain of runs, each resuming the one killed before."""
    stale_id = dataset._sample_collection.find_one({"metadata.duration": 0.3})["_id"]
    points = {
        "run registered": lambda pid: _run_registered(dataset, pid),
        "stale metadata repaired": lambda pid: _count(dataset, {"_id": stale_id, "metadata.duration": {"$gt": 1.0}}, 1),
        "bad file's error written": lambda pid: _count(dataset, {"marlin_error": {"$exists": True, "$ne": None}}, 1),
        "model loaded": lambda pid: _model_recorded(dataset, pid),
    }
    # clips, the stale clip and the clip with older labels are the samples a run writes
    for k in range(1, CLIPS + 2):
        points[f"{k} samples written"] = lambda pid, k=k: _count(dataset, done_query, k)
    return points


def _kill_when(zygote, dataset, uri, point, **params) -> tuple[int, bool]:
    """Start a run, kill it with SIGKILL once ``point(pid)`` holds; True when it was still running."""
    pid = zygote.start(uri, dataset.name, **params)
    reached = wait_until(point(pid), pid)
    killed = alive(pid)
    if killed:
        os.kill(pid, signal.SIGKILL)
    wait_exit(pid)
    return pid, killed and reached


def _finish(zygote, dataset, uri, **params) -> int:
    pid = zygote.start(uri, dataset.name, **params)
    wait_exit(pid)
    assert statuses(dataset, pid) == ["completed"], statuses(dataset, pid)
    return pid


@pytest.fixture
def chaos_dataset(color_videos, broken, tmp_path):
    dataset, roles = make_dataset(color_videos, broken, tmp_path / "videos", clips=CLIPS)
    yield dataset, roles
    dataset.delete()


@pytest.mark.parametrize("operation", ["caption", "find"])
def test_kill_model_runs_at_every_point(operation, zygote, chaos_dataset, trained_model_dir):
    """A chain of runs, each killed at a later state and resumed by the next; then one run to the end."""
    dataset, roles = chaos_dataset
    params = dict(model=str(trained_model_dir))
    if operation == "find":
        uri, params["queries"] = FIND, QUERIES
        done_query = {"marlin_find.searched.1": {"$exists": True}}  # a second pair: written by this run
        state = find_state
    else:
        uri, done_query = CAPTION, {"marlin_events.marlin_settings": {"$nin": [None, "older"]}}
        state = lambda docs: caption_state(docs, roles)  # noqa: E731
    before = raw(dataset)
    finished = {}
    kills = 0
    points = _kill_points(dataset, roles, done_query)
    for name, point in points.items():
        pid, killed = _kill_when(zygote, dataset, uri, point, **params)
        kills += killed
        after_kill = raw(dataset)
        assert_user_data_kept(before, after_kill, roles)
        now = state(after_kill)  # whole labels only, no duplicate
        for sample_id, labels in finished.items():
            assert now[sample_id] == labels, (name, sample_id)  # finished earlier: same ids
        finished = now
        if killed:
            assert statuses(dataset, pid) == ["interrupted"], (name, statuses(dataset, pid))
    _finish(zygote, dataset, uri, **params)
    final = raw(dataset)
    assert_user_data_kept(before, final, roles)
    complete = state(final)
    clips = [sid for sid in final if sid not in (roles["broken"], roles["hand_made"])]
    assert set(complete) >= set(clips)
    for sample_id, labels in finished.items():
        assert complete[sample_id] == labels, sample_id
    assert final[roles["broken"]]["marlin_error"].startswith(f"{operation}: ")
    assert final[roles["stale"]]["metadata"]["duration"] > 1.0
    assert not any(doc.get(f"marlin_{'events' if operation == 'caption' else 'find'}_partial")
                   for doc in final.values())
    print(f"{operation}: {kills} kills at {len(points)} points")
    assert kills >= 10, f"{operation}: only {kills} of {len(points)} kill points were reached while running"


SAMPLES = 24


@pytest.fixture
def eval_dataset(color_videos):
    """Many samples sharing one file, with predictions and ground truth, so the evaluation has moments."""
    dataset = fo.Dataset(persistent=True)
    metadata = fo.VideoMetadata.build_for(str(color_videos["red"]))
    samples = []
    for index in range(SAMPLES):
        spans = [(0.0, 1.0 + index % 3 * 0.5), (1.5, 3.0)]
        samples.append(fo.Sample(
            filepath=str(color_videos["red"]), metadata=metadata, note=f"user {index}",
            ground_truth=fo.TemporalDetections(detections=[
                fo.TemporalDetection.from_timestamps(list(s), metadata=metadata, label=f"truth {i}", checked=True)
                for i, s in enumerate(spans)]),
            marlin_events=fo.TemporalDetections(detections=[
                fo.TemporalDetection.from_timestamps([s[0], s[1] - 0.2 * i], metadata=metadata, label=f"event {i}",
                                                     confidence=0.5 + 0.1 * i)
                for i, s in enumerate(spans)], marlin_settings="x")))
    dataset.add_samples(samples)
    yield dataset
    dataset.delete()


def test_kill_evaluate_at_every_point(zygote, eval_dataset):
    dataset = eval_dataset
    params = dict(pred_field="marlin_events", gt_field="ground_truth", mode="events", eval_key="ev")
    reference_pid = _finish(zygote, dataset, EVALUATE, **params)
    assert reference_pid
    dataset.reload()
    reference = dataset.get_run_info("ev_marlin").config.metrics
    user_fields = ("marlin_events", "ground_truth", "note", "filepath", "tags")

    def user_docs():
        return list(dataset._sample_collection.find({}, {field: True for field in user_fields}))

    before = user_docs()
    n = SAMPLES
    points = {
        "started": lambda: True,
        "run registered": lambda: True,
        "copies of predictions": _count(dataset, {"ev_predictions": {"$exists": True}}, 1),
        "copies of ground truth": _count(dataset, {"ev_ground_truth": {"$exists": True}}, 1),
        "copies renamed": _count(dataset, {"ev_predictions.detections.label": "event"}, 1),
        "first matches": _count(dataset, {"ev_tp": {"$exists": True}}, 1),
        "a third matched": _count(dataset, {"ev_tp": {"$exists": True}}, n // 3),
        "two thirds matched": _count(dataset, {"ev_tp": {"$exists": True}}, 2 * n // 3),
        "all matched": _count(dataset, {"ev_tp": {"$exists": True}}, n),
        "labels restored on the copies": _count(dataset, {"ev_predictions.detections.ev": {"$exists": True},
                                                          "ev_predictions.detections.label": {"$ne": "event"}}, 1),
        "per-sample IoU": _count(dataset, {"ev_iou": {"$exists": True}}, 1),
        "all IoU": _count(dataset, {"ev_iou": {"$exists": True}}, n),
    }
    kills = 0
    for name, point in points.items():
        if name not in ("started", "run registered"):
            # from a clean slate, so the state awaited is this run's; the first two kills interrupt the
            # clean-up of the previous run's fields instead
            dataset.reload()
            if "ev" in dataset.list_evaluations():
                dataset.delete_evaluation("ev")
            for field in ("ev_predictions", "ev_ground_truth", "ev_iou"):
                if dataset.has_sample_field(field):
                    dataset.delete_sample_field(field)
            if "ev_marlin" in dataset.list_runs():
                dataset.delete_run("ev_marlin")
        at = point if name != "run registered" else None
        pid, killed = _kill_when(zygote, dataset, EVALUATE,
                                 (lambda pid, at=at: at) if at else (lambda pid: _run_registered(dataset, pid)),
                                 **params)
        kills += killed
        assert user_docs() == before, name
        if killed:
            # killed before its record was written, a run has done nothing and leaves no record
            expected = ([], ["interrupted"]) if name == "started" else (["interrupted"],)
            assert statuses(dataset, pid) in expected, (name, statuses(dataset, pid))
        if name in ("started", "run registered", "all IoU"):
            # the next run starts from what the killed one left
            _finish(zygote, dataset, EVALUATE, **params)
            assert user_docs() == before, name
            dataset.reload()
            assert dataset.get_run_info("ev_marlin").config.metrics == reference, name
    print(f"evaluate: {kills} kills at {len(points)} points")
    assert kills >= 10, f"evaluate: only {kills} of {len(points)} kill points were reached while running"
