"""Progress the App can show for an immediate run, and a scheduled run that can be stopped between samples."""

from __future__ import annotations

import asyncio
import os
import threading

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionResult, execute_or_delegate_operator

from operators.run.runs import run_history
from zygote import wait_until

CAPTION = "@marlin/marlin/caption"


def _videos(dataset, color_videos, tmp_path, count: int) -> None:
    paths = []
    for index in range(count):
        color = "red" if index % 2 == 0 else "blue"
        link = tmp_path / f"{index:02d}-{color}.mp4"
        os.link(color_videos[color], link)
        paths.append(link)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])


def test_immediate_run_streams_progress_then_its_summary(dataset, color_videos, trained_model_dir, tmp_path):
    """What the App receives from ``/operators/execute/generator``: set_progress events, then the result."""
    _videos(dataset, color_videos, tmp_path, 2)
    request = dict(dataset_name=dataset.name, view=dataset.view()._serialize(),
                   params=dict(model=str(trained_model_dir)))
    result = asyncio.run(execute_or_delegate_operator(CAPTION, request))
    assert result.is_generator
    messages = list(result.result)
    progress = [m.body.params for m in messages if getattr(m.body, "operator_uri", None) == "set_progress"]
    labels = [p["label"] for p in progress]
    assert labels[0] == "0/2 loading the model"
    assert any(label.startswith("1/2 ") and label.endswith("00-red.mp4") for label in labels), labels
    assert any(label.startswith("2/2 ") and label.endswith("01-blue.mp4") for label in labels), labels
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    assert progress[-1]["progress"] == 1.0
    final = messages[-1]
    assert final.cls is ExecutionResult
    assert final.body.result["done"] == 2 and final.body.result["status"] == "completed"
    assert final.to_json()["body"]["result"]["done"] == 2  # what the App reads


def test_scheduled_run_marked_failed_stops_between_samples(dataset, color_videos, trained_model_dir, tmp_path):
    """``fiftyone delegated fail`` while a worker runs: the run stops after its current sample, recorded."""
    videos = 6
    _videos(dataset, color_videos, tmp_path, videos)
    queued = foo.execute_operator(CAPTION, dict(dataset=dataset, request_delegation=True,
                                                params=dict(model=str(trained_model_dir))))
    service = DelegatedOperationService()
    operation_id = queued.result["id"]

    def fail_after_first_sample():
        wait_until(lambda: dataset._sample_collection.count_documents({"marlin_events": {"$exists": True}}) >= 1,
                   timeout_s=240, poll_s=0.01)
        service.set_failed(operation_id, result=ExecutionResult(error="stopped by the user"))

    stopper = threading.Thread(target=fail_after_first_sample, daemon=True)
    stopper.start()
    service.execute_queued_operations(operator=CAPTION, dataset_name=dataset.name)
    stopper.join(timeout=10)
    (record,) = run_history(dataset, "marlin_caption")
    assert record["status"] == "interrupted", record
    written = dataset._sample_collection.count_documents({"marlin_events": {"$exists": True}})
    assert 1 <= written < videos
    assert record["outcome"]["done"] == written
    for sample in dataset.exists("marlin_events"):
        assert len(sample["marlin_events"].detections) == 2
