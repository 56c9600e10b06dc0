"""Read a video the way Marlin's reference preprocessing does, bit for bit, in less time and memory.

Marlin's recorded outputs were produced by qwen-vl-utils 0.0.14 (``process_vision_info(...,
image_patch_size=16, return_video_metadata=True)``), and transformers' own video loading gives different frame
sizes on HD video, so the frames must be exactly qwen-vl-utils' frames. The work is split by job:

* :mod:`.sampling`: which frames and what size (the reference's arithmetic; options and environment);
* :mod:`.decode`: open and probe a file, decode the sampled frames in chunks (:func:`load_video`);
* :mod:`.resize`: the bit-identical resize, frame by frame;
* :mod:`._sparse` (private): a copy of the stream without the frames no sampled frame depends on.

Every failure is a :class:`~marlin_core.errors.VideoError` (a :class:`~marlin_core.errors.MarlinError`)
naming the file and the cause; the errors are re-exported here.
"""

from ..errors import (
    EmptyVideoFileError,
    NoFramesError,
    NotAVideoError,
    NoVideoStreamError,
    SamplingOptionError,
    UndecodableVideoError,
    VideoError,
    VideoNotFoundError,
    VideoTooShortError,
)
from .decode import RESIZE_CHUNK_FRAMES, SampledVideo, decode_chunks, load_video, probe, video_info
from .resize import resize_frames
from .sampling import (
    DEFAULT_FPS,
    DEFAULT_MIN_FRAMES,
    DEFAULT_MODEL_SEQ_LEN,
    FRAME_FACTOR,
    FRAME_LIMIT,
    SIZE_FACTOR,
    VIDEO_BACKEND,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    SamplingOptions,
    SamplingPlan,
    VideoInfo,
    decode_threads,
    env_model_seq_len,
    frame_pixel_cap,
    frame_size,
    frame_window,
    ignored_environment,
    sample_count,
    sample_indices,
)

__all__ = [
    # errors
    "EmptyVideoFileError", "NoFramesError", "NotAVideoError", "NoVideoStreamError", "SamplingOptionError",
    "UndecodableVideoError", "VideoError", "VideoNotFoundError", "VideoTooShortError",
    # sampling: reference constants, options -> plan, the arithmetic
    "DEFAULT_FPS", "DEFAULT_MIN_FRAMES", "DEFAULT_MODEL_SEQ_LEN", "FRAME_FACTOR", "FRAME_LIMIT", "SIZE_FACTOR",
    "VIDEO_BACKEND", "VIDEO_MAX_PIXELS", "VIDEO_MIN_PIXELS", "SamplingOptions", "SamplingPlan", "VideoInfo",
    "decode_threads", "env_model_seq_len", "frame_pixel_cap", "frame_size", "frame_window", "ignored_environment",
    "sample_count", "sample_indices",
    # decoding and resizing
    "RESIZE_CHUNK_FRAMES", "SampledVideo", "decode_chunks", "load_video", "probe", "resize_frames", "video_info",
]
