"""marlin_core.engine.inputs: model inputs equal to the reference path's, the recorded shapes, timestamps and batching.

The reference is ``tiny_model.reference_inputs``: qwen-vl-utils' ``process_vision_info`` then the processor with
``do_resize=False``, the path Marlin's recorded outputs were made with. The processor is the tiny checkpoint's
``Qwen3VLProcessor`` (Marlin's video geometry: patch 16, temporal patch 2, merge 2). ``prepare_inputs`` writes
``pixel_values_videos`` itself (``marlin_core.engine.patches``): float32 must equal the processor's, bfloat16 the
processor's cast to bfloat16 (tests/test_inputs_memory.py checks its memory).
"""

from __future__ import annotations

import re

import pytest
import torch
import tiny_model
from qwen_vl_utils import process_vision_info
from media import make_clip

from marlin_core.engine.inputs import (
    build_messages,
    chat_text,
    collate_inputs,
    prepare_inputs,
    processor_inputs,
)
from marlin_core.engine.patches import video_patches
from marlin_core.video import SamplingOptions, VideoNotFoundError, load_video

PROMPT = tiny_model.CAPTION_PROMPT
KEYS = {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw"}


@pytest.fixture(scope="session")
def processor():
    return tiny_model.build_processor()


def assert_same_inputs(ours, ref, dtype: torch.dtype = torch.float32) -> None:
    """Equal keys, dtypes and values; with ``dtype``, ours holds the reference's float32 pixels cast to it."""
    assert set(ours.keys()) == set(ref.keys()) == KEYS
    assert ref["pixel_values_videos"].dtype == torch.float32
    for key in KEYS:
        expected = ref[key].to(dtype) if key == "pixel_values_videos" else ref[key]
        assert ours[key].dtype == expected.dtype, key
        assert torch.equal(ours[key], expected), key


def reference_with_options(processor, path, prompt, options: SamplingOptions):
    """The reference path on ``build_messages``' messages (their video entry carries the option keys)."""
    messages = build_messages(path, prompt, options)
    _, videos, video_kwargs = process_vision_info(
        messages, return_video_kwargs=True, return_video_metadata=True, image_patch_size=16
    )
    frames, metadata = zip(*videos)
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return processor(text=[text], videos=list(frames), video_metadata=list(metadata), do_resize=False,
                     return_tensors="pt", **video_kwargs)


def timestamps_in(processor, inputs) -> list[float]:
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    return [float(t) for t in re.findall(r"<(\d+\.\d) seconds>", text)]


@pytest.mark.parametrize("seconds, grid, patches", [(11.0, [11, 30, 54], 17820), (10.44, [10, 30, 54], 16200)])
def test_recorded_shapes_of_the_real_model(processor, clips, tmp_path, seconds, grid, patches):
    path = clips["480p"] if seconds == 11.0 else make_clip(tmp_path / "clip.mp4", "854x480", 25, seconds)
    sampled = load_video(path)
    ours = prepare_inputs(processor, sampled, PROMPT)
    assert ours["video_grid_thw"].tolist() == [grid]
    assert tuple(ours["pixel_values_videos"].shape) == (patches, 1536)
    reference = tiny_model.reference_inputs(processor, path, PROMPT)
    assert_same_inputs(ours, reference)
    assert_same_inputs(prepare_inputs(processor, sampled, PROMPT, dtype=torch.bfloat16), reference, torch.bfloat16)


@pytest.mark.parametrize("name", ["1080p", "portrait", "rotated", "vfr", "one_second", "odd"])
def test_inputs_equal_the_reference_path(processor, clips, name):
    sampled = load_video(clips[name])
    reference = tiny_model.reference_inputs(processor, clips[name], PROMPT)
    assert_same_inputs(prepare_inputs(processor, sampled, PROMPT), reference)
    assert_same_inputs(processor_inputs(processor, sampled, PROMPT), reference)
    for dtype in (torch.bfloat16, torch.float16):
        assert_same_inputs(prepare_inputs(processor, sampled, PROMPT, dtype=dtype), reference, dtype)


@pytest.mark.parametrize("frames, height, width", [(7, 64, 96), (1, 32, 32), (6, 96, 160), (5, 160, 64)])
def test_patches_equal_the_video_processor_on_any_frames(processor, frames, height, width):
    """Every uint8 value, odd frame counts (the last frame repeated to fill the temporal patch), non-square
    grids, and float32 scratch sizes that split a frame pair into uneven groups of strips."""
    video_processor = processor.video_processor
    video = torch.randint(0, 256, (frames, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(frames))
    video[0, :, 0, :] = torch.tensor([0, 255, 128], dtype=torch.uint8)[:, None]  # both extremes always present
    reference = video_processor(videos=[video], do_resize=False, do_sample_frames=False, return_tensors="pt")
    ours, grid = video_patches(video_processor, video)
    assert [grid] == reference["video_grid_thw"].tolist()
    assert ours.dtype == torch.float32 and torch.equal(ours, reference["pixel_values_videos"])
    strip_bytes = (width // 16) * 2 * 1536 * 4  # one strip: one temporal patch, two patch rows
    for scratch_bytes in (0, strip_bytes, 2 * strip_bytes + 1, 10**9):
        ours, _ = video_patches(video_processor, video, torch.bfloat16, scratch_bytes=scratch_bytes)
        assert torch.equal(ours, reference["pixel_values_videos"].to(torch.bfloat16)), scratch_bytes


def test_patches_refuse_frames_they_cannot_patchify(processor):
    video_processor = processor.video_processor
    with pytest.raises(ValueError, match="must be uint8"):
        video_patches(video_processor, torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="48x32 is not a multiple of 32"):
        video_patches(video_processor, torch.zeros(2, 3, 48, 32, dtype=torch.uint8))


def test_a_processor_that_does_not_normalise_is_run_as_is(clips):
    """``video_patches`` reproduces the rescale + normalise Marlin's processor does; any other is run itself."""
    plain = tiny_model.build_processor()
    plain.video_processor.do_normalize = False
    sampled = load_video(clips["one_second"])
    reference = processor_inputs(plain, sampled, PROMPT)
    assert_same_inputs(prepare_inputs(plain, sampled, PROMPT), reference)
    assert_same_inputs(prepare_inputs(plain, sampled, PROMPT, dtype=torch.bfloat16), reference, torch.bfloat16)


def test_options_equal_the_reference_with_the_same_message_keys(processor, clips):
    options = SamplingOptions(video_start=2.0, video_end=6.0, fps=1.5, max_pixels=200_000)
    assert build_messages("a.mp4", "hi", options)[0]["content"][0] == {
        "type": "video", "video": "a.mp4", "fps": 1.5, "max_pixels": 200_000, "video_start": 2.0, "video_end": 6.0
    }
    ours = prepare_inputs(processor, clips["480p"], PROMPT, video_start=2.0, video_end=6.0, fps=1.5, max_pixels=200_000)
    assert_same_inputs(ours, reference_with_options(processor, clips["480p"], PROMPT, options))


def test_timestamps_are_seconds_of_the_video_or_of_the_window(processor, clips):
    sampled = load_video(clips["480p"], SamplingOptions(video_start=2.0, video_end=6.0))
    indices, fps = sampled.metadata["frames_indices"], sampled.metadata["fps"]
    pairs = [(indices[i] + indices[i + 1]) / 2 / fps for i in range(0, len(indices), 2)]
    video = timestamps_in(processor, prepare_inputs(processor, sampled, PROMPT))
    window = timestamps_in(processor, prepare_inputs(processor, sampled, PROMPT, timestamps="window"))
    assert video == [float(f"{t:.1f}") for t in pairs] and video[0] == 2.3
    assert window == [float(f"{t - sampled.plan.start_s:.1f}") for t in pairs] and window[0] == 0.3
    with pytest.raises(ValueError, match="timestamps='clip' is invalid"):
        prepare_inputs(processor, sampled, PROMPT, timestamps="clip")


def test_a_loaded_video_gives_the_same_inputs_and_must_match_the_options(processor, clips):
    options = SamplingOptions(video_end=1.5)
    sampled = load_video(clips["rotated"], options)
    from_path = prepare_inputs(processor, clips["rotated"], PROMPT, options)
    assert_same_inputs(prepare_inputs(processor, sampled, PROMPT), from_path)
    assert_same_inputs(prepare_inputs(processor, sampled, PROMPT, video_end=1.5), from_path)
    with pytest.raises(ValueError, match="was loaded with"):
        prepare_inputs(processor, sampled, PROMPT, video_end=1.0)


def test_chat_text_is_the_processors_template(processor, clips):
    text = chat_text(processor, clips["odd"], PROMPT)
    assert text == processor.apply_chat_template(tiny_model.chat_messages(clips["odd"], PROMPT), tokenize=False,
                                                 add_generation_prompt=True)
    assert "<|vision_start|><|video_pad|><|vision_end|>" in text and text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_batches_are_left_padded_and_rows_equal_single_inputs(processor, clips):
    items = [(clips["rotated"], "short"), (clips["odd"], PROMPT)]
    singles = [prepare_inputs(processor, video, prompt) for video, prompt in items]
    batch = collate_inputs(singles, processor.tokenizer.pad_token_id)
    # the reference: qwen-vl-utils over both conversations, then one left-padded processor call
    conversations = [build_messages(video, prompt) for video, prompt in items]
    _, videos, video_kwargs = process_vision_info(
        conversations, return_video_kwargs=True, return_video_metadata=True, image_patch_size=16
    )
    frames, metadata = zip(*videos)
    texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    reference = processor(text=texts, videos=list(frames), video_metadata=list(metadata), do_resize=False,
                          padding=True, padding_side="left", return_tensors="pt", **video_kwargs)
    assert_same_inputs(batch, reference)
    width = batch["input_ids"].shape[1]
    for row, single in enumerate(singles):
        pad = width - single["input_ids"].shape[1]
        assert batch["attention_mask"][row, :pad].sum() == 0
        assert (batch["input_ids"][row, :pad] == processor.tokenizer.pad_token_id).all()
        for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            assert torch.equal(batch[key][row, pad:], single[key][0])
    assert collate_inputs(singles[:1], 0) is singles[0]


def test_a_bad_video_raises_its_video_error(processor, broken):
    with pytest.raises(VideoNotFoundError, match="missing.mp4: no such file"):
        prepare_inputs(processor, broken["missing"], PROMPT)
    with pytest.raises(ValueError, match="inputs is empty"):
        collate_inputs([], processor.tokenizer.pad_token_id)
