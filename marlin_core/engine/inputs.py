"""Model inputs for one video and prompt, identical to the path Marlin's recorded outputs were made with.

Why: the reference is ``process_vision_info(...)`` then ``processor(text, videos, video_metadata,
do_resize=False, ...)``. :mod:`marlin_core.video` reproduces the first step's frames and metadata; this module
builds the same chat text and calls the processor the same way, so ``input_ids`` (with the per-frame
``<t seconds>`` timestamps), ``pixel_values_videos`` and ``video_grid_thw`` equal the reference's
(``torch.equal``). It also left-pads several such inputs into one batch for ``generate``.

The processor itself runs only on the text: ``pixel_values_videos`` is written by :mod:`.patches` straight
from the uint8 frames, in the model's dtype when asked (the processor's float32 path holds ~3x the model-input
tensor above the frames; this ~1x). :func:`processor_inputs` keeps the processor's own path, the reference the
tests and ``bench/preprocess.py`` compare with.

Timestamps are seconds of the video (the reference) unless ``timestamps="window"``: the pipeline asks for
that, in one place, when it answers a long video window by window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BatchFeature
from transformers.video_utils import VideoMetadata

from ..video import SampledVideo, SamplingOptions, load_video
from .patches import can_patchify, video_patches

__all__ = [
    "TIMESTAMPS_VIDEO",
    "TIMESTAMPS_WINDOW",
    "build_messages",
    "chat_text",
    "collate_inputs",
    "prepare_inputs",
    "processor_inputs",
    "video_metadata",
]

# How the processor is told where each frame pair sits in time (seconds in the ``<t seconds>`` text):
TIMESTAMPS_VIDEO = "video"  # from the start of the video: the reference (qwen-vl-utils) behaviour
TIMESTAMPS_WINDOW = "window"  # from the window's first frame, as if the window were cut out as its own clip
TIMESTAMP_MODES = (TIMESTAMPS_VIDEO, TIMESTAMPS_WINDOW)

# Per-token keys that are padded on the left when batching, with their pad value (None = the tokenizer's pad id).
TOKEN_KEYS = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0}
# Per-video keys that are concatenated along dim 0 when batching.
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw")

VideoInput = str | Path | SampledVideo


def build_messages(video_path: str | Path, prompt: str, options: SamplingOptions | None = None) -> list[dict]:
    """The one-turn chat Marlin is prompted with: the video, then the prompt.

    The video entry carries the qwen-vl-utils keys for non-default options (``fps``, ``video_start``, ...), so
    ``process_vision_info`` on these messages is the reference for ``prepare_inputs`` with the same options.

    Args:
        video_path: the video file.
        prompt: the user text after the video.
        options: sampling options; None = defaults.

    Returns:
        ``[{"role": "user", "content": [{"type": "video", "video": "<path>", ...}, {"type": "text", ...}]}]``.
    """
    keys = (options or SamplingOptions()).reference_keys()
    video = {"type": "video", "video": str(video_path), **keys}
    return [{"role": "user", "content": [video, {"type": "text", "text": prompt}]}]


def chat_text(processor, video_path: str | Path, prompt: str, options: SamplingOptions | None = None) -> str:
    """The chat template's text for the prompt, before the processor expands the video placeholder."""
    messages = build_messages(video_path, prompt, options)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def video_metadata(video: SampledVideo, timestamps: str = TIMESTAMPS_VIDEO) -> dict:
    """The metadata the processor writes timestamps from.

    Args:
        video: the sampled video.
        timestamps: ``"video"`` (reference: seconds from the start of the video) or ``"window"`` (seconds from
            the window's first frame, ``video.plan.start_s``; add it back to map answers to the video).

    Returns:
        A dict like ``process_vision_info``'s (``fps``, ``frames_indices``, ``total_num_frames``,
        ``video_backend``).
    """
    if timestamps not in TIMESTAMP_MODES:
        raise ValueError(f"timestamps={timestamps!r} is invalid: use one of {TIMESTAMP_MODES}")
    metadata = video.metadata
    if timestamps == TIMESTAMPS_WINDOW:
        first = video.plan.first_frame
        metadata["frames_indices"] = [index - first for index in metadata["frames_indices"]]
    return metadata


def _processor_kwargs(processor) -> dict:
    """The processor kwargs of the reference call: ``do_resize=False`` (frames are already sized) and
    ``do_sample_frames=False`` (what ``process_vision_info(..., return_video_kwargs=True)`` returns: frames are
    already sampled)."""
    kwargs = {"do_resize": False, "do_sample_frames": False, "return_tensors": "pt"}
    if hasattr(processor.video_processor, "cap_pixels_per_frame"):
        # Only read when resizing, which do_resize=False skips; set so transformers does not warn that it is unset.
        kwargs["cap_pixels_per_frame"] = False
    return kwargs


def _sampled(video: VideoInput, options: SamplingOptions | None, overrides: dict) -> SampledVideo:
    """Load ``video`` with the options, or check that an already loaded one was loaded with them."""
    if overrides:
        options = (options or SamplingOptions()).with_overrides(**overrides)
    if isinstance(video, SampledVideo):
        if options is not None and options != video.options:
            raise ValueError(
                f"{video.path}: this SampledVideo was loaded with {video.options}, not {options}; "
                "load it again with these options or drop them"
            )
        return video
    return load_video(video, options)


def prepare_inputs(
    processor,
    video: VideoInput,
    prompt: str,
    options: SamplingOptions | None = None,
    *,
    timestamps: str = TIMESTAMPS_VIDEO,
    dtype: torch.dtype = torch.float32,
    **option_overrides: Any,
) -> BatchFeature:
    """Model inputs for one video and prompt, equal to the reference path's for the same options.

    Args:
        processor: the model's ``Qwen3VLProcessor``.
        video: a path, or a :class:`SampledVideo` from :func:`marlin_core.video.load_video` (e.g. decoded ahead
            by :func:`marlin_core.prefetch.prefetch`); options given with it must be the ones it was loaded with.
        prompt: the user text after the video.
        options: sampling options; None = the reference defaults.
        timestamps: ``"video"`` (default, reference) or ``"window"``; see :func:`video_metadata`.
        dtype: ``pixel_values_videos``' dtype: float32 (the reference's) or the model's, e.g. bfloat16 (equal
            to the reference cast to it, made without the float32 tensor).
        **option_overrides: ``SamplingOptions`` fields (``fps``, ``min_frames``, ``max_frames``, ``max_pixels``,
            ``min_pixels``, ``video_start``, ``video_end`` in seconds, ``model_seq_len``) replacing ``options``'.

    Returns:
        A ``BatchFeature`` of torch tensors, batch size 1: ``input_ids``, ``attention_mask``,
        ``mm_token_type_ids``, ``pixel_values_videos``, ``video_grid_thw``.

    Raises:
        VideoError: the video cannot be used (the message names the file and cause).
        SamplingOptionError: an option out of range.
    """
    sampled = _sampled(video, options, option_overrides)
    if not can_patchify(processor.video_processor):
        inputs = processor_inputs(processor, sampled, prompt, timestamps=timestamps)
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(dtype)
        return inputs
    pixel_values, grid = video_patches(processor.video_processor, sampled.frames, dtype)
    grid_thw = torch.tensor([grid])
    text = expanded_text(processor, chat_text(processor, sampled.path, prompt, sampled.options), grid_thw,
                         video_metadata(sampled, timestamps))
    tokens = processor.tokenizer([text], return_token_type_ids=False, return_tensors="pt")
    mm_token_type_ids = torch.tensor(processor.create_mm_token_type_ids(tokens["input_ids"]))
    return BatchFeature(data={**tokens, "mm_token_type_ids": mm_token_type_ids,
                              "pixel_values_videos": pixel_values, "video_grid_thw": grid_thw})


def expanded_text(processor, text: str, grid_thw: torch.Tensor, metadata: dict) -> str:
    """``text`` with its one video placeholder replaced as the processor replaces it: per temporal patch,
    ``<t seconds>`` then ``<|vision_start|>``, the video tokens and ``<|vision_end|>`` (the processor's own
    ``replace_video_token`` and ``get_text_with_replacements``, given the grid instead of the pixels)."""
    video = {"video_grid_thw": grid_thw, "video_metadata": [VideoMetadata(**metadata)]}
    replacement = processor.replace_video_token(video, video_idx=0)
    texts, _ = processor.get_text_with_replacements([text], videos_replacements=[replacement])
    return texts[0]


def processor_inputs(processor, video: SampledVideo, prompt: str, *, timestamps: str = TIMESTAMPS_VIDEO
                     ) -> BatchFeature:
    """The processor's own path on ``video``'s frames (float32): what :func:`prepare_inputs` equals, at ~3x the
    model-input tensor in memory; the reference for tests and ``bench/preprocess.py``."""
    text = chat_text(processor, video.path, prompt, video.options)
    return processor(
        text=[text],
        videos=[video.frames],
        video_metadata=[video_metadata(video, timestamps)],
        **_processor_kwargs(processor),
    )


def collate_inputs(inputs: Sequence[BatchFeature], pad_token_id: int) -> BatchFeature:
    """Stack single-row inputs (from :func:`prepare_inputs`) into one left-padded batch.

    Token keys are padded on the left (``input_ids`` with ``pad_token_id``, masks with 0); video keys are
    concatenated in order. One input is returned as is.

    Args:
        inputs: ``BatchFeature`` s of batch size 1.
        pad_token_id: the tokenizer's pad id.

    Returns:
        A ``BatchFeature`` with batch size ``len(inputs)``.
    """
    if not inputs:
        raise ValueError("collate_inputs: inputs is empty")
    if len(inputs) == 1:
        return inputs[0]
    unknown = set(inputs[0].keys()) - set(TOKEN_KEYS) - set(VIDEO_KEYS)
    if unknown:
        raise ValueError(f"collate_inputs: do not know how to batch {sorted(unknown)}")
    width = max(item["input_ids"].shape[1] for item in inputs)
    data = {}
    for key, fill in TOKEN_KEYS.items():
        if key not in inputs[0]:
            continue
        value = pad_token_id if fill is None else fill
        data[key] = torch.cat(
            [torch.nn.functional.pad(item[key], (width - item[key].shape[1], 0), value=value) for item in inputs]
        )
    for key in VIDEO_KEYS:
        if key in inputs[0]:
            data[key] = torch.cat([item[key] for item in inputs])
    return BatchFeature(data=data)
