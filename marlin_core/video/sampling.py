"""Which frames Marlin's reference preprocessing samples, and at what size: pure arithmetic, no decoding.

Why this module exists: Marlin's recorded outputs were produced by qwen-vl-utils 0.0.14
(``process_vision_info(..., image_patch_size=16)``); to give the model the same inputs we must pick the same
frame indices and the same target size. The functions here mirror its ``smart_nframes``,
``calculate_video_frame_range`` and ``smart_resize`` one by one (tests compare them with qwen-vl-utils), and
:meth:`SamplingOptions.resolve` is the one place where options, the environment and the file meet, giving a
:class:`SamplingPlan` that says what was used.

Environment variables (qwen-vl-utils 0.0.14 is the reference, so we follow what *it* reads):

* ``MODEL_SEQ_LEN`` (default 128000): honoured like qwen-vl-utils, read when options are resolved (it
  reads it at import). It sets the per-clip pixel budget ``MODEL_SEQ_LEN * 32 * 32 * 0.9`` that lowers the
  per-frame pixel cap of clips with more than ~307 sampled frames. Pass ``model_seq_len=`` instead.
* ``TORCHCODEC_NUM_THREADS``: honoured as the decoder's thread count (speed only; frames are identical).
* ``FORCE_QWENVL_VIDEO_READER``: ignored; we always decode with torchcodec, the reader that produced the
  recorded outputs. A value other than ``torchcodec`` is logged once as ignored.
* ``FPS``, ``FPS_MAX_FRAMES``, ``FPS_MIN_FRAMES``, ``VIDEO_MAX_PIXELS`` (listed on the model card):
  ignored, as qwen-vl-utils 0.0.14 ignores them (its constants are 2.0 fps, at least 4 and at most 768
  frames, and the pixel cap above). A set one is logged once as a warning, naming the option to pass
  instead (``fps``, ``max_frames``, ``min_frames``, ``max_pixels``); :func:`ignored_environment` lists them.

Frame indices are 0-based decoder indices (torchcodec's), inclusive where a range is given.

Length (~415 lines): each qwen-vl-utils function it mirrors sits next to the options and plan that use it,
so the reference arithmetic can be read (and compared with upstream) in one place; split, it would scatter.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from ..errors import SamplingOptionError, VideoError, VideoTooShortError

__all__ = [
    "DEFAULT_DECODE_THREADS", "DEFAULT_FPS", "DEFAULT_MIN_FRAMES", "DEFAULT_MODEL_SEQ_LEN", "FRAME_FACTOR", "FRAME_LIMIT",
    "SIZE_FACTOR", "VIDEO_BACKEND", "VIDEO_MAX_PIXELS", "VIDEO_MIN_PIXELS", "SamplingOptions", "SamplingPlan", "VideoInfo",
    "decode_threads", "env_model_seq_len", "frame_pixel_cap", "frame_size", "frame_window", "ignored_environment",
    "sample_count", "sample_indices",
]

logger = logging.getLogger(__name__)

# --- qwen-vl-utils 0.0.14 constants (vision_process.py); changing one breaks bit-identity with the reference.
DEFAULT_FPS = 2.0  # FPS: frames sampled per second of video
DEFAULT_MIN_FRAMES = 4  # FPS_MIN_FRAMES: floor for very short clips
FRAME_LIMIT = 768  # FPS_MAX_FRAMES: hard cap on sampled frames when max_frames is not given
FRAME_FACTOR = 2  # frames come in pairs: the vision encoder's temporal patch is 2 frames
SIZE_FACTOR = 32  # image_patch_size 16 x spatial merge 2: frame sides are multiples of 32 px
VIDEO_MIN_PIXELS = 128 * SIZE_FACTOR * SIZE_FACTOR  # VIDEO_MIN_TOKEN_NUM: at least 128 tokens per frame
VIDEO_MAX_PIXELS = 768 * SIZE_FACTOR * SIZE_FACTOR  # VIDEO_MAX_TOKEN_NUM: at most 768 tokens per frame
DEFAULT_MODEL_SEQ_LEN = 128000  # MODEL_SEQ_LEN: the clip's pixel budget is 90% of it in 32x32 cells
PIXEL_BUDGET_FRACTION = 0.9
MIN_PIXELS_HEADROOM = 1.05  # the per-frame cap never goes below 1.05 x min_pixels
MAX_ASPECT_RATIO = 200  # smart_resize refuses thinner frames
VIDEO_BACKEND = "torchcodec"  # what the reference decoded with; also written into the metadata

# 0 lets FFmpeg pick one thread per core; TORCHCODEC_NUM_THREADS overrides it (qwen-vl-utils reads it too).
DEFAULT_DECODE_THREADS = 0

# Environment variables from the model card that qwen-vl-utils 0.0.14 does not read -> the option to use.
IGNORED_ENV_VARS = {
    "FPS": "fps",
    "FPS_MAX_FRAMES": "max_frames",
    "FPS_MIN_FRAMES": "min_frames",
    "VIDEO_MAX_PIXELS": "max_pixels",
}
_warned_env: set[str] = set()
_warned_env_lock = threading.Lock()


@dataclass(frozen=True)
class VideoInfo:
    """What the file holds, as torchcodec sees it after scanning it (the values sampling uses).

    Attributes:
        path: the file.
        duration_s: stream duration in seconds (torchcodec's, from the decoded timestamps).
        fps: average frames per second (torchcodec ``average_fps``; the rate timestamps are computed with).
        num_frames: frames in the stream.
        width, height: frame size in pixels as decoded, i.e. after applying ``rotation_deg``.
        rotation_deg: display rotation from the container (0 when none); torchcodec applies it when decoding.
        codec: FFmpeg codec name, e.g. ``"h264"``.
    """

    path: Path
    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation_deg: float
    codec: str | None


# ---------------------------------------------------------------------------------------------------- environment


def _env_number(name: str, default: int, parse) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(parse(value))
    except ValueError:
        raise SamplingOptionError(f"{name}={value!r} in the environment is not a number; unset it or fix it") from None


def decode_threads() -> int:
    """Decoder threads: ``TORCHCODEC_NUM_THREADS`` when set (as qwen-vl-utils), else DEFAULT_DECODE_THREADS."""
    return _env_number("TORCHCODEC_NUM_THREADS", DEFAULT_DECODE_THREADS, int)


def env_model_seq_len() -> int:
    """``MODEL_SEQ_LEN`` from the environment, parsed as qwen-vl-utils does (``int(float(...))``), else 128000."""
    return _env_number("MODEL_SEQ_LEN", DEFAULT_MODEL_SEQ_LEN, float)


def ignored_environment() -> dict[str, str]:
    """Set environment variables that qwen-vl-utils 0.0.14 (hence this pipeline) ignores, with their values."""
    ignored = {name: os.environ[name] for name in IGNORED_ENV_VARS if name in os.environ}
    reader = os.environ.get("FORCE_QWENVL_VIDEO_READER")
    if reader is not None and reader != VIDEO_BACKEND:
        ignored["FORCE_QWENVL_VIDEO_READER"] = reader
    return ignored


def _warn_ignored_environment(ignored: dict[str, str]) -> None:
    with _warned_env_lock:
        fresh = {name: value for name, value in ignored.items() if name not in _warned_env}
        _warned_env.update(fresh)
    for name, value in fresh.items():
        instead = IGNORED_ENV_VARS.get(name)
        advice = f"pass {instead}= instead" if instead else f"frames are always decoded with {VIDEO_BACKEND}"
        logger.warning(
            "%s=%s is ignored: qwen-vl-utils 0.0.14, whose preprocessing produced Marlin's reference outputs, "
            "does not read it; %s", name, value, advice,
        )


# ---------------------------------------------------------------------------------------------------- reference arithmetic


def _round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor


def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def sample_count(window_frames: int, video_fps: float, fps: float, min_frames: int, max_frames: int | None) -> int:
    """How many frames to sample from a window (qwen-vl-utils ``smart_nframes``, fps mode).

    Args:
        window_frames: frames in the window.
        video_fps: the video's average frames per second.
        fps: sampled frames per second of video.
        min_frames: floor (rounded up to even).
        max_frames: cap (rounded down to even); None means min(FRAME_LIMIT, window_frames).

    Returns:
        An even number of frames, 2 <= n <= window_frames, or 0 when the window has fewer than 2 frames.
    """
    low = _ceil_by_factor(min_frames, FRAME_FACTOR)
    high = _floor_by_factor(min(FRAME_LIMIT, window_frames) if max_frames is None else max_frames, FRAME_FACTOR)
    wanted = window_frames / video_fps * fps
    return _floor_by_factor(min(min(max(wanted, low), high), window_frames), FRAME_FACTOR)


def frame_window(num_frames: int, video_fps: float, start_s: float | None, end_s: float | None) -> tuple[int, int]:
    """The 0-based inclusive frame range of ``[start_s, end_s]`` (qwen-vl-utils ``calculate_video_frame_range``).

    Times are clamped to the video (``num_frames / video_fps`` seconds); the first frame is the first one at or
    after ``start_s``, the last the last one at or before ``end_s``.

    Returns:
        ``(first_frame, last_frame)``; ``first_frame >= last_frame`` means fewer than 2 frames.
    """
    if start_s is None and end_s is None:
        return 0, num_frames - 1
    max_duration_s = num_frames / video_fps
    first = 0 if start_s is None else math.ceil(max(0.0, min(start_s, max_duration_s)) * video_fps)
    last = num_frames - 1
    if end_s is not None:
        last = min(math.floor(max(0.0, min(end_s, max_duration_s)) * video_fps), num_frames - 1)
    return first, last


def sample_indices(first_frame: int, last_frame: int, count: int) -> list[int]:
    """``count`` evenly spread 0-based frame indices from ``first_frame`` to ``last_frame`` inclusive.

    Computed with ``torch.linspace`` (float32) and rounded, exactly as the reference, whose rounding of
    halves this must reproduce.
    """
    return torch.linspace(first_frame, last_frame, count).round().long().tolist()


def frame_size(height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The resized frame ``(height, width)`` in pixels (qwen-vl-utils ``smart_resize``, factor 32).

    Both sides become multiples of 32 with the aspect ratio kept as closely as possible and
    ``min_pixels <= height * width <= max_pixels``.

    Raises:
        ValueError: the aspect ratio exceeds MAX_ASPECT_RATIO.
    """
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f}:1 exceeds {MAX_ASPECT_RATIO}:1")
    h_bar = max(SIZE_FACTOR, _round_by_factor(height, SIZE_FACTOR))
    w_bar = max(SIZE_FACTOR, _round_by_factor(width, SIZE_FACTOR))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = _floor_by_factor(height / beta, SIZE_FACTOR)
        w_bar = _floor_by_factor(width / beta, SIZE_FACTOR)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by_factor(height * beta, SIZE_FACTOR)
        w_bar = _ceil_by_factor(width * beta, SIZE_FACTOR)
    return h_bar, w_bar


def frame_pixel_cap(count: int, min_pixels: int, max_pixels: int | None, model_seq_len: int) -> int | float:
    """The per-frame pixel cap of a clip of ``count`` frames (qwen-vl-utils ``fetch_video``).

    ``min(768 tokens, clip budget / count * 2)``, never below ``1.05 * min_pixels``; a user ``max_pixels`` can
    only lower it (qwen-vl-utils warns and clamps a larger one).
    """
    budget = model_seq_len * SIZE_FACTOR * SIZE_FACTOR * PIXEL_BUDGET_FRACTION
    cap = max(min(VIDEO_MAX_PIXELS, budget / count * FRAME_FACTOR), int(min_pixels * MIN_PIXELS_HEADROOM))
    return cap if max_pixels is None else min(max_pixels, cap)


# ---------------------------------------------------------------------------------------------------- options -> plan


@dataclass(frozen=True)
class SamplingPlan:
    """Everything :func:`load_video` will do to one video, resolved from options, file and environment.

    Attributes:
        options: the options it came from.
        video_fps: the video's average fps (timestamps are ``frame index / video_fps`` seconds).
        first_frame, last_frame: the window, 0-based inclusive frame indices.
        frame_indices: the sampled frames, 0-based, ascending.
        source_height, source_width: decoded frame size in pixels.
        height, width: resized frame size in pixels (multiples of 32).
        min_pixels, max_pixels: the per-frame pixel bounds used for the resize.
        model_seq_len: the token budget the pixel cap was derived from.
    """

    options: "SamplingOptions"
    video_fps: float
    first_frame: int
    last_frame: int
    frame_indices: tuple[int, ...]
    source_height: int
    source_width: int
    height: int
    width: int
    min_pixels: int
    max_pixels: int | float
    model_seq_len: int

    @property
    def window_frames(self) -> int:
        """Frames in the window (the reference's ``total_num_frames``)."""
        return self.last_frame - self.first_frame + 1

    @property
    def start_s(self) -> float:
        """Time of the window's first frame, in seconds (``first_frame / video_fps``)."""
        return self.first_frame / self.video_fps


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample and size frames; the defaults reproduce qwen-vl-utils 0.0.14 exactly.

    Attributes:
        fps: frames sampled per second of video.
        min_frames: sample at least this many frames (rounded up to even), within the window's frames.
        max_frames: sample at most this many (rounded down to even); None = min(768, frames in the window).
        max_pixels: lower the per-frame pixel cap to this; None = the reference cap (see ``frame_pixel_cap``).
        min_pixels: per-frame pixel floor (small videos are upscaled to it).
        video_start, video_end: the window to sample, in seconds from the start of the video; None = the ends.
        model_seq_len: token budget for the pixel cap; None = ``MODEL_SEQ_LEN`` from the environment, else 128000.
    """

    fps: float = DEFAULT_FPS
    min_frames: int = DEFAULT_MIN_FRAMES
    max_frames: int | None = None
    max_pixels: int | None = None
    min_pixels: int = VIDEO_MIN_PIXELS
    video_start: float | None = None
    video_end: float | None = None
    model_seq_len: int | None = None

    def __post_init__(self):
        def bad(name: str, rule: str):
            raise SamplingOptionError(f"{name}={getattr(self, name)!r} is invalid: {rule}")

        if not (_is_real(self.fps) and math.isfinite(self.fps) and self.fps > 0):
            bad("fps", "must be a number of frames per second > 0 (default 2.0)")
        if not (_is_int(self.min_frames) and self.min_frames >= 0):
            bad("min_frames", "must be an integer >= 0 (default 4)")
        if self.max_frames is not None and not (_is_int(self.max_frames) and self.max_frames >= FRAME_FACTOR):
            bad("max_frames", f"must be an integer >= {FRAME_FACTOR}, or None for the default (768)")
        if not (_is_int(self.min_pixels) and self.min_pixels > 0):
            bad("min_pixels", f"must be an integer > 0 (default {VIDEO_MIN_PIXELS})")
        if self.max_pixels is not None and not (_is_int(self.max_pixels) and self.max_pixels >= self.min_pixels):
            bad("max_pixels", f"must be an integer >= min_pixels ({self.min_pixels}), or None for the default cap")
        for name in ("video_start", "video_end"):
            value = getattr(self, name)
            if value is not None and not (_is_real(value) and math.isfinite(value) and value >= 0):
                bad(name, "must be a number of seconds >= 0, or None")
        if self.video_start is not None and self.video_end is not None and self.video_end <= self.video_start:
            bad("video_end", f"must be later than video_start={self.video_start!r} (seconds)")
        if self.model_seq_len is not None and not (_is_int(self.model_seq_len) and self.model_seq_len > 0):
            bad("model_seq_len", "must be an integer > 0, or None for MODEL_SEQ_LEN / 128000")

    def with_overrides(self, **overrides) -> "SamplingOptions":
        """A copy with some fields replaced; unknown names raise SamplingOptionError listing the valid ones."""
        names = [f.name for f in fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise SamplingOptionError(f"unknown sampling option(s) {unknown}; valid: {names}")
        return replace(self, **overrides)

    def reference_keys(self) -> dict:
        """The qwen-vl-utils message keys (``fps``, ``video_start``, ...) that ask the reference for these options.

        Only options that differ from the defaults are listed; ``model_seq_len`` has no key (the reference
        reads ``MODEL_SEQ_LEN`` from the environment instead).
        """
        defaults = SamplingOptions()
        keys = {}
        for name in ("fps", "min_frames", "max_frames", "min_pixels", "max_pixels", "video_start", "video_end"):
            value = getattr(self, name)
            if value is not None and value != getattr(defaults, name):
                keys[name] = value
        return keys

    def resolve(self, info: VideoInfo, frame_height: int | None = None, frame_width: int | None = None) -> SamplingPlan:
        """Decide the frames and the frame size for one video (the only place options meet environment and file).

        Args:
            info: the probed video.
            frame_height, frame_width: decoded frame size when known to differ from ``info`` (pixels).

        Returns:
            The :class:`SamplingPlan`.

        Raises:
            VideoTooShortError: the video or window has fewer than 2 frames.
            VideoError: frames too thin to resize (aspect ratio beyond 200:1).
        """
        _warn_ignored_environment(ignored_environment())
        model_seq_len = self.model_seq_len or env_model_seq_len()
        first, last = frame_window(info.num_frames, info.fps, self.video_start, self.video_end)
        if first >= last:
            raise VideoTooShortError(info.path, self._too_short_cause(info, first, last))
        count = sample_count(last - first + 1, info.fps, self.fps, self.min_frames, self.max_frames)
        if count < FRAME_FACTOR:
            raise VideoTooShortError(
                info.path,
                f"fps={self.fps:g} and min_frames={self.min_frames} sample {count} frame(s) from "
                f"{last - first + 1}; at least {FRAME_FACTOR} are needed: raise fps or min_frames",
            )
        cap = frame_pixel_cap(count, self.min_pixels, self.max_pixels, model_seq_len)
        source_h, source_w = frame_height or info.height, frame_width or info.width
        try:
            height, width = frame_size(source_h, source_w, self.min_pixels, cap)
        except ValueError as error:
            raise VideoError(info.path, f"{error}; Marlin cannot read frames this thin") from error
        return SamplingPlan(
            options=self,
            video_fps=info.fps,
            first_frame=first,
            last_frame=last,
            frame_indices=tuple(sample_indices(first, last, count)),
            source_height=source_h,
            source_width=source_w,
            height=height,
            width=width,
            min_pixels=self.min_pixels,
            max_pixels=cap,
            model_seq_len=model_seq_len,
        )

    def _too_short_cause(self, info: VideoInfo, first: int, last: int) -> str:
        if self.video_start is None and self.video_end is None:
            still = " (a still image?)" if info.num_frames == 1 else ""
            return f"only {info.num_frames} frame{'s' if info.num_frames != 1 else ''}{still}; Marlin samples frame pairs, at least 2 frames are needed"
        window = f"{self.video_start or 0:g}-{self.video_end if self.video_end is not None else info.duration_s:g} s"
        return (
            f"window {window} holds {max(last - first + 1, 0)} frame(s) of a {info.duration_s:.2f} s video "
            f"at {info.fps:g} fps; at least 2 are needed: widen the window or check video_start/video_end"
        )
