"""End-to-end engine tests: real ``generate`` on the tiny Qwen3.5 checkpoints, real ffmpeg videos."""

from __future__ import annotations

import pytest
import torch

from marlin_core import Marlin, ModelLoadError
from marlin_core.contract import parse_caption, parse_find, strip_thinking
from marlin_core.video import VideoError
from tiny_model import TRAINED_TARGETS

CAPTION_KEYS = {"caption", "scene", "events"}
EVENT_KEYS = {"start", "end", "description", "confidence"}


def expected_caption(color: str) -> dict:
    return parse_caption(TRAINED_TARGETS[color]["caption"])


@pytest.mark.parametrize("color", ["red", "blue"])
def test_caption_generates_the_trained_events(trained_marlin, color_videos, color):
    result = trained_marlin.caption(color_videos[color])
    expected = expected_caption(color)
    assert CAPTION_KEYS <= set(result)
    assert result["caption"] == expected["caption"]
    assert result["scene"] == expected["scene"]
    assert [(e["start"], e["end"], e["description"]) for e in result["events"]] == [
        (e["start"], e["end"], e["description"]) for e in expected["events"]
    ]
    assert all(set(e) == EVENT_KEYS for e in result["events"])
    assert all(0.5 < e["confidence"] <= 1.0 for e in result["events"])
    assert result["format_ok"] is True and result["truncated"] is False


def test_the_two_videos_get_different_events(trained_marlin, color_videos):
    red = trained_marlin.caption(color_videos["red"])
    blue = trained_marlin.caption(color_videos["blue"])
    assert red["events"] != blue["events"]


@pytest.mark.parametrize("color", ["red", "blue"])
def test_find_generates_the_trained_span(trained_marlin, color_videos, color):
    target = TRAINED_TARGETS[color]["find"]
    result = trained_marlin.find(color_videos[color], target["query"])
    expected = parse_find(target["answer"])
    assert {"raw", "span", "format_ok"} <= set(result)
    assert result["raw"] == target["answer"]
    assert result["span"] == expected["span"]
    assert result["format_ok"] is True
    assert 0.5 < result["confidence"] <= 1.0


def test_garbage_output_never_raises(random_marlin, color_videos):
    caption = random_marlin.caption(color_videos["red"], max_new_tokens=24)
    assert caption["format_ok"] is False
    assert caption["events"] == []
    assert isinstance(caption["raw"], str) and isinstance(caption["caption"], str)
    assert caption["caption"] == strip_thinking(caption["raw"]).strip()
    found = random_marlin.find(color_videos["red"], "red light", max_new_tokens=12)
    assert found["format_ok"] is False
    assert found["span"] is None and found["confidence"] is None
    assert isinstance(found["raw"], str)


def test_truncated_generation_is_reported(trained_marlin, color_videos):
    result = trained_marlin.caption(color_videos["red"], max_new_tokens=12)
    assert result["truncated"] is True
    full = trained_marlin.caption(color_videos["red"])
    assert len(result["events"]) < len(full["events"])


def test_find_many_equals_independent_finds(trained_marlin, color_videos):
    queries = ["red light", "blue sky", "red fades"]
    many = trained_marlin.find_many(color_videos["red"], queries)
    single = [trained_marlin.find(color_videos["red"], q) for q in queries]
    assert [r["raw"] for r in many] == [r["raw"] for r in single]
    assert [r["span"] for r in many] == [r["span"] for r in single]
    for a, b in zip(many, single):
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-4) if b["confidence"] else a["confidence"] is None


def test_caption_batch_equals_one_at_a_time(trained_marlin, color_videos):
    videos = [color_videos["red"], color_videos["blue"], color_videos["red"]]
    batched = trained_marlin.caption_batch(videos, batch_size=3)
    single = [trained_marlin.caption(v) for v in videos]
    assert [r["caption"] for r in batched] == [r["caption"] for r in single]
    for a, b in zip(batched, single):
        assert [e["confidence"] for e in a["events"]] == pytest.approx([e["confidence"] for e in b["events"]], abs=1e-4)


def test_find_batch_equals_one_at_a_time(trained_marlin, color_videos):
    pairs = [(color_videos["red"], "red light"), (color_videos["blue"], "blue sky")]
    batched = trained_marlin.find_batch(pairs, batch_size=2)
    single = [trained_marlin.find(v, q) for v, q in pairs]
    assert [(r["raw"], r["span"]) for r in batched] == [(r["raw"], r["span"]) for r in single]


def test_iter_captions_reports_a_bad_video_and_goes_on(trained_marlin, color_videos, broken):
    videos = [color_videos["red"], broken["empty"], broken["missing"], color_videos["blue"]]
    outcomes = list(trained_marlin.iter_captions(videos, batch_size=2, prefetch_depth=1))
    assert [video for video, _ in outcomes] == videos
    assert outcomes[0][1]["caption"] == expected_caption("red")["caption"]
    assert outcomes[3][1]["caption"] == expected_caption("blue")["caption"]
    for _, error in outcomes[1:3]:
        assert isinstance(error, VideoError)
    assert str(broken["empty"]) in str(outcomes[1][1])
    assert str(broken["missing"]) in str(outcomes[2][1])


def test_public_attributes(trained_marlin, trained_model_dir):
    assert trained_marlin.model.config.model_type == "qwen3_5"
    assert trained_marlin.processor.tokenizer is not None
    assert trained_marlin.name_or_path == str(trained_model_dir)


def test_missing_local_folder_gives_advice(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        Marlin.from_pretrained(tmp_path / "no-such-model")


def test_unreachable_hub_gives_advice_fast(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelLoadError) as error:
        Marlin.from_pretrained("NemoStation/Marlin-2B")
    message = str(error.value)
    assert "hf auth login" in message and "local" in message


def test_query_inputs_equal_a_full_prepare(trained_marlin, color_videos):
    from marlin_core.contract import find_prompt
    from marlin_core.video import load_video

    sampled = load_video(color_videos["red"])
    shared = trained_marlin.prepare(sampled, find_prompt("red light"))
    generator = trained_marlin.generator
    prefix_len = generator.prefix_length(shared)
    for query in ["blue sky", 'a "quoted" query with more words than the first']:
        built = generator.query_inputs(shared, prefix_len, sampled, find_prompt(query))
        full = trained_marlin.prepare(sampled, find_prompt(query))
        assert set(built) == set(full) - {"pixel_values_videos"}
        for key in built:
            assert torch.equal(built[key], full[key]), key
