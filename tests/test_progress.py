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
SEARCH = "@marlin/marlin/search"


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


def test_search_from_the_app_streams_its_stages_then_opens_its_clips(dataset, color_videos, trained_model_dir,
                                                                     tmp_path):
    """A search as the App runs it (request naming the operator and the current sample): captioning, then n/N.

    The two red videos are the candidates of "red light" (top_k=2); the blue one is captioned, not searched.
    """
    _videos(dataset, color_videos, tmp_path, 3)
    request = dict(dataset_name=dataset.name, view=dataset.view()._serialize(), operator_uri=SEARCH,
                   current_sample=None, params=dict(model=str(trained_model_dir), queries=["red light"], top_k=2))
    result = asyncio.run(execute_or_delegate_operator(SEARCH, request))
    assert result.is_generator
    messages = list(result.result)
    triggered = [getattr(m.body, "operator_uri", None) for m in messages]
    progress = [m.body.params for m in messages if getattr(m.body, "operator_uri", None) == "set_progress"]
    labels = [p["label"] for p in progress]
    assert labels[0] == "captioning 3 video(s) without captions", labels
    assert "0/2 videos searched: loading the model" in labels
    assert any(label.startswith("1/2 videos searched: ") and label.endswith("00-red.mp4") for label in labels)
    assert any(label.startswith("2/2 videos searched: ") and label.endswith("02-red.mp4") for label in labels)
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    assert progress[-1]["progress"] == 1.0
    # then the search field's colour, the summary, the dataset reloaded and the ranked clips opened, in that order
    tail = [uri for uri in triggered if uri not in (None, "set_progress")]
    assert tail == ["set_color_scheme", "show_output", "reload_dataset", "set_view"], triggered
    (colours,) = [m.body.params for m in messages if getattr(m.body, "operator_uri", None) == "set_color_scheme"]
    assert {"path": "marlin_search", "fieldColor": "#ff6d04"} in colours["fields"], colours
    final = messages[-1]
    assert final.cls is ExecutionResult
    summary = final.body.result
    assert summary["status"] == "completed" and summary["done"] == 2 and summary["caption_calls"] == 3
    assert summary["caption"]["done"] == 3 and summary["view_name"] == "marlin-search"
    assert dataset.has_saved_view("marlin-search")
    (record,) = run_history(dataset, "marlin_search")
    assert record["status"] == "completed"


def test_a_search_failing_in_the_app_shows_the_reason_and_records_it(dataset, color_videos, tmp_path):
    """A model folder that passes no load: the App gets the red box's reason; the run record says failed."""
    _videos(dataset, color_videos, tmp_path, 1)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    request = dict(dataset_name=dataset.name, view=dataset.view()._serialize(), operator_uri=SEARCH,
                   current_sample=None, params=dict(model=str(broken), queries=["red light"], exhaustive=True))
    messages = list(asyncio.run(execute_or_delegate_operator(SEARCH, request)).result)
    progress = [m.body.params for m in messages if getattr(m.body, "operator_uri", None) == "set_progress"]
    assert progress[-1]["label"].startswith("failed: "), progress
    assert messages[-1].to_json()["error"]
    (record,) = run_history(dataset, "marlin_search")
    assert record["status"] == "failed" and record["error"]
