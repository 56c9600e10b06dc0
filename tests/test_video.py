"""marlin_core.video: probing, the VideoError causes, reference-exact sampling and resizing; marlin_core.prefetch.

The reference is qwen-vl-utils 0.0.14 itself (``fetch_video`` with ``image_patch_size=16``), run on the same
ffmpeg-made clips: our frames must equal its frames (``torch.equal``) and our metadata its metadata.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import torch
from qwen_vl_utils import vision_process as qwen

from marlin_core.errors import MarlinError
from marlin_core.prefetch import prefetch
from marlin_core.video import (
    FRAME_LIMIT,
    EmptyVideoFileError,
    NoFramesError,
    NotAVideoError,
    NoVideoStreamError,
    SampledVideo,
    SamplingOptionError,
    SamplingOptions,
    UndecodableVideoError,
    VideoError,
    VideoNotFoundError,
    VideoTooShortError,
    decode_chunks,
    decode_threads,
    frame_size,
    frame_window,
    ignored_environment,
    load_video,
    probe,
    sample_count,
)


def reference(path: Path, **element) -> tuple[torch.Tensor, dict]:
    """qwen-vl-utils' frames (float32) and metadata for one video entry."""
    (frames, metadata), _ = qwen.fetch_video(
        {"type": "video", "video": str(path), **element},
        image_patch_size=16,
        return_video_sample_fps=True,
        return_video_metadata=True,
    )
    return frames, metadata


def assert_matches_reference(sampled: SampledVideo, path: Path, **element) -> None:
    frames, metadata = reference(path, **element)
    assert sampled.frames.dtype == torch.uint8 and sampled.frames.is_contiguous()
    assert sampled.frames.shape == frames.shape
    assert torch.equal(sampled.frames.float(), frames)
    assert sampled.metadata == metadata


# ------------------------------------------------------------------------------------------- bit-identity


@pytest.mark.parametrize("name", ["480p", "1080p", "portrait", "rotated", "vfr", "one_second", "odd"])
def test_frames_and_metadata_equal_qwen_vl_utils(clips, name):
    assert_matches_reference(load_video(clips[name]), clips[name])


@pytest.mark.parametrize(
    "options",
    [
        {"video_start": 2.3, "video_end": 7.77},
        {"video_start": 5.0},
        {"video_end": 3.0, "min_frames": 10, "max_frames": 8},
        {"fps": 1.0, "max_pixels": 200_000},
        {"fps": 30.0, "video_end": 1.5},  # more than the video has: every frame once
        {"min_pixels": 100_000, "max_pixels": 150_000, "max_frames": 6},
    ],
)
def test_options_match_the_same_keys_in_qwen_vl_utils(clips, options):
    assert_matches_reference(load_video(clips["480p"], SamplingOptions(**options)), clips["480p"], **options)


def test_model_seq_len_is_the_reference_pixel_budget(clips):
    # qwen-vl-utils reads MODEL_SEQ_LEN at import; its total_pixels key is the same budget, given per video.
    sampled = load_video(clips["480p"], SamplingOptions(model_seq_len=2000))
    assert_matches_reference(sampled, clips["480p"], total_pixels=2000 * 32 * 32 * 0.9)
    assert (sampled.plan.height, sampled.plan.width) != (480, 864)


def test_chunk_size_does_not_change_frames(clips):
    one = load_video(clips["portrait"], chunk_frames=1)
    three = load_video(clips["portrait"], chunk_frames=3)
    assert torch.equal(one.frames, three.frames)


@pytest.mark.parametrize(
    ("count", "chunk_frames", "chunks"),
    [(1, 4, [(0, 1)]), (2, 4, [(0, 1), (1, 2)]), (10, 4, [(0, 1), (1, 5), (5, 9), (9, 10)]), (3, 1, [(0, 1), (1, 2), (2, 3)])],
)
def test_decode_chunks_start_with_one_frame_and_cover_every_frame_once(count, chunk_frames, chunks):
    assert decode_chunks(count, chunk_frames) == chunks


def test_loading_leaves_torch_threads_as_they_were(clips):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite runs on 1; loading resizes on half of them while decoding
    try:
        load_video(clips["portrait"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_pure_functions_agree_with_qwen_vl_utils():
    for total in (2, 3, 7, 25, 275, 600, 2000, 40_000):
        for video_fps in (7.5, 25.0, 29.97, 60.0):
            for element in ({}, {"fps": 0.5}, {"fps": 4.0, "min_frames": 7}, {"max_frames": 9}, {"fps": 100.0}):
                ours = sample_count(total, video_fps, element.get("fps", 2.0), element.get("min_frames", 4),
                                    element.get("max_frames"))
                assert ours == qwen.smart_nframes(element, total, video_fps), (total, video_fps, element)
            for start, end in ((None, None), (0.3, None), (None, 1.0), (0.5, 1e6), (0.0, 0.2)):
                first, last = frame_window(total, video_fps, start, end)
                if first < last:
                    window = qwen.calculate_video_frame_range({"video_start": start, "video_end": end}, total, video_fps)
                    assert (first, last, last - first + 1) == window
    for height, width in ((480, 854), (1080, 1920), (1280, 720), (197, 333), (10, 1900), (4000, 3000)):
        for max_pixels in (131072 * 1.05, 200_000, 786_432, 5e6):
            assert frame_size(height, width, 131072, max_pixels) == qwen.smart_resize(
                height, width, 32, min_pixels=131072, max_pixels=max_pixels
            )


# ------------------------------------------------------------------------------------------- probe


def test_probe_describes_the_clip(clips):
    info = probe(clips["480p"])
    assert (info.width, info.height, info.num_frames, info.fps) == (854, 480, 275, 25.0)
    assert info.duration_s == pytest.approx(11.0)
    assert info.rotation_deg == 0 and info.codec == "h264" and info.path == clips["480p"]


def test_probe_reports_rotation_and_the_displayed_size(clips):
    info = probe(clips["rotated"])
    assert info.rotation_deg == 90
    assert (info.width, info.height) == (240, 320)  # as decoded: upright 320x240 turned by 90 degrees
    assert load_video(clips["rotated"]).frames.shape[-2:] == (448, 320)


def test_probe_of_a_variable_frame_rate_clip_uses_the_average_rate(clips):
    info = probe(clips["vfr"])
    assert info.num_frames == 90
    assert info.duration_s == pytest.approx(6.0, abs=0.05)
    assert info.fps == pytest.approx(info.num_frames / info.duration_s)


# ------------------------------------------------------------------------------------------- errors

ERRORS = [
    ("missing", VideoNotFoundError, "no such file"),
    ("directory", NotAVideoError, "is a directory"),
    ("empty", EmptyVideoFileError, "the file is empty (0 bytes)"),
    ("text", NotAVideoError, "not a video file FFmpeg can read"),
    ("audio", NoVideoStreamError, "no video stream (audio only)"),
    ("zero_frames", NoFramesError, "the video stream holds no frames"),
    ("garbage", UndecodableVideoError, "cannot be decoded"),
]


def test_every_video_exception_is_a_marlin_error_defined_in_errors():
    import marlin_core.errors as errors
    import marlin_core.video as video

    exported = [getattr(video, name) for name in video.__all__]
    exceptions = [item for item in exported if isinstance(item, type) and issubclass(item, BaseException)]
    assert {error.__name__ for error in exceptions} == {
        "VideoError", "VideoNotFoundError", "EmptyVideoFileError", "NotAVideoError", "NoVideoStreamError",
        "UndecodableVideoError", "NoFramesError", "VideoTooShortError", "SamplingOptionError",
    }
    for error in exceptions:
        assert issubclass(error, MarlinError) and getattr(errors, error.__name__) is error


@pytest.mark.parametrize("name, error, cause", ERRORS)
def test_each_bad_file_raises_its_video_error(broken, name, error, cause):
    for call in (probe, load_video):
        with pytest.raises(error) as raised:
            call(broken[name])
        assert isinstance(raised.value, VideoError)
        assert str(raised.value).startswith(f"{broken[name]}: ")
        assert cause in raised.value.cause
        assert raised.value.path == str(broken[name])


def test_a_single_frame_is_too_short_to_sample(broken):
    assert probe(broken["one_frame"]).num_frames == 1
    with pytest.raises(VideoTooShortError, match=r"one_frame\.mp4: only 1 frame \(a still image\?\); .* at least 2"):
        load_video(broken["one_frame"])


def test_a_window_past_the_end_is_too_short(clips):
    with pytest.raises(VideoTooShortError, match=r"window 20-30 s holds 0 frame\(s\) of a 1.00 s video"):
        load_video(clips["one_second"], SamplingOptions(video_start=20, video_end=30))


def test_a_sampling_rate_that_yields_no_pair_is_too_short(clips):
    with pytest.raises(VideoTooShortError, match=r"fps=0.01 and min_frames=0 sample 0 frame\(s\)"):
        load_video(clips["one_second"], SamplingOptions(fps=0.01, min_frames=0))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fps": 0}, "fps=0 is invalid"),
        ({"max_frames": 1}, "max_frames=1 is invalid: must be an integer >= 2"),
        ({"max_pixels": 1000}, "max_pixels=1000 is invalid: must be an integer >= min_pixels"),
        ({"video_start": 5.0, "video_end": 2.0}, "video_end=2.0 is invalid: must be later than video_start"),
        ({"video_start": -1}, "video_start=-1 is invalid"),
    ],
)
def test_bad_options_say_which_and_why(options, message):
    with pytest.raises(SamplingOptionError, match=message) as raised:
        SamplingOptions(**options)
    assert isinstance(raised.value, MarlinError) and isinstance(raised.value, ValueError)


def test_overrides_are_checked_by_name_and_numpy_numbers_are_accepted(clips, monkeypatch):
    import numpy as np

    assert SamplingOptions().with_overrides(max_frames=np.int64(8), fps=np.float32(1.5)).max_frames == 8
    with pytest.raises(SamplingOptionError, match=r"unknown sampling option\(s\) \['frames'\]; valid: \['fps'"):
        SamplingOptions().with_overrides(frames=8)
    monkeypatch.setenv("MODEL_SEQ_LEN", "lots")
    with pytest.raises(SamplingOptionError, match="MODEL_SEQ_LEN='lots' in the environment is not a number"):
        load_video(clips["one_second"])


# ------------------------------------------------------------------------------------------- environment


def test_model_card_environment_variables_are_ignored_and_said_so(clips, monkeypatch, caplog):
    baseline = load_video(clips["one_second"])
    for name, value in {"FPS_MAX_FRAMES": "2", "FPS": "8", "FPS_MIN_FRAMES": "20", "VIDEO_MAX_PIXELS": "1000",
                        "FORCE_QWENVL_VIDEO_READER": "decord"}.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="marlin_core.video"):
        sampled = load_video(clips["one_second"])
    assert torch.equal(sampled.frames, baseline.frames) and sampled.metadata == baseline.metadata
    assert ignored_environment() == {"FPS_MAX_FRAMES": "2", "FPS": "8", "FPS_MIN_FRAMES": "20",
                                     "VIDEO_MAX_PIXELS": "1000", "FORCE_QWENVL_VIDEO_READER": "decord"}
    warned = caplog.text
    assert "FPS_MAX_FRAMES=2 is ignored" in warned and "pass max_frames= instead" in warned


def test_model_seq_len_and_decoder_threads_come_from_the_environment(clips, monkeypatch):
    monkeypatch.setenv("MODEL_SEQ_LEN", "2000")
    monkeypatch.setenv("TORCHCODEC_NUM_THREADS", "1")
    assert decode_threads() == 1
    sampled = load_video(clips["480p"])
    assert sampled.plan.model_seq_len == 2000
    assert torch.equal(sampled.frames, load_video(clips["480p"], SamplingOptions(model_seq_len=2000)).frames)


def test_plan_says_what_was_used(clips):
    plan = load_video(clips["480p"], SamplingOptions(video_start=2.0, video_end=6.0)).plan
    assert plan.first_frame == 50 and plan.last_frame == 150 and plan.window_frames == 101
    assert plan.start_s == 2.0 and len(plan.frame_indices) == 8 and FRAME_LIMIT == 768
    assert (plan.frame_indices[0], plan.frame_indices[-1], plan.video_fps, plan.options.fps) == (50, 150, 25.0, 2.0)
    assert (plan.source_width, plan.source_height, plan.width, plan.height) == (854, 480, 864, 480)
    assert plan.model_seq_len == 128000 and plan.min_pixels == 131072


# ------------------------------------------------------------------------------------------- prefetch


def test_prefetch_keeps_order_and_yields_errors_as_values(clips, broken):
    paths = [clips["one_second"], broken["missing"], clips["rotated"]]
    results = list(prefetch(paths, load_video, depth=1))
    assert [item for item, _ in results] == paths
    assert isinstance(results[0][1], SampledVideo) and isinstance(results[2][1], SampledVideo)
    assert isinstance(results[1][1], VideoNotFoundError)


def test_prefetch_loads_ahead_while_the_caller_works():
    started: dict[int, float] = {}

    def load(item: int) -> int:
        started[item] = time.perf_counter()
        time.sleep(0.05)
        return item

    handed: dict[int, float] = {}
    for item, _ in prefetch(range(4), load, depth=1):
        handed[item] = time.perf_counter()
        time.sleep(0.1)  # the caller's work: meanwhile the next item loads
        assert item == 3 or item + 1 in started
        assert item + 2 not in started  # but no further than depth ahead
    assert sorted(handed) == [0, 1, 2, 3]


def test_prefetch_depth_zero_runs_inline_and_early_exit_stops_loading():
    caller = threading.get_ident()
    seen = []
    assert [r for _, r in prefetch([1, 2], lambda i: threading.get_ident() == caller, depth=0)] == [True, True]
    for item, _ in prefetch(range(100), seen.append, depth=2):
        if item == 1:
            break
    assert len(seen) <= 4
    with pytest.raises(ValueError, match="depth=-1 must be an integer >= 0"):
        list(prefetch([1], str, depth=-1))
