"""Read a video the way Marlin's reference preprocessing does, bit for bit, in less time and memory.

Why this module exists: Marlin's recorded outputs were produced by qwen-vl-utils 0.0.14
(``process_vision_info(..., image_patch_size=16, return_video_metadata=True)``), and transformers' own video
loading gives different frame sizes on HD video. So the frames must be exactly qwen-vl-utils' frames:
the same frame indices, the same target size, the same antialiased bicubic resize. What we do better:

* the sampled frames come out of torchcodec ``get_frames_at``, as in the reference, but from a copy of the
  H.264/HEVC stream without the frames no sampled frame depends on (``sparse_decode.py``: ~40% fewer
  frames decoded on x264's default B-frames, same decoder, same pixels), in chunks, and the resize of one
  chunk overlaps the decoding of the next (a decoder thread and the calling thread, on half of torch's
  threads so that idle ones do not spin against the decoder);
* the resize works frame by frame through one reused float buffer and writes straight into the uint8
  output, instead of turning the whole clip into one float tensor (1 GB for 40 frames of 1080p): 3x less
  CPU for the same values;
* frames are kept as uint8 (the reference returns the same integer values as float32, 4x the memory;
  the processor turns both into identical ``pixel_values_videos``);
* options are resolved once, in :meth:`SamplingOptions.resolve`, into a :class:`SamplingPlan` that says
  what was used (``plan.describe()``), and every failure is a :class:`VideoError` naming the file and cause.

Environment variables (qwen-vl-utils 0.0.14 is the reference, so we follow what *it* reads):

* ``MODEL_SEQ_LEN`` (default 128000): honoured like qwen-vl-utils, read when options are resolved (it
  reads it at import). It sets the per-clip pixel budget ``MODEL_SEQ_LEN * 32 * 32 * 0.9`` that lowers the
  per-frame pixel cap of clips with more than ~307 sampled frames. Pass ``model_seq_len=`` instead.
* ``TORCHCODEC_NUM_THREADS``: honoured as the decoder's thread count (speed only; frames are identical).
* ``FORCE_QWENVL_VIDEO_READER``: ignored; we always decode with torchcodec, the reader that produced the
  recorded outputs. A value other than ``torchcodec`` is logged once as ignored.
* ``FPS``, ``FPS_MAX_FRAMES``, ``FPS_MIN_FRAMES``, ``VIDEO_MAX_PIXELS`` (listed on the model card):
  ignored, as qwen-vl-utils 0.0.14 ignores them (its constants are 2.0 fps, at least 4 and at most 768
  frames, and the pixel cap above). A set one is logged once, naming the option to pass instead
  (``fps``, ``max_frames``, ``min_frames``, ``max_pixels``), and listed by ``SamplingPlan.describe()``.

Frame indices in this module are 0-based decoder indices (torchcodec's), inclusive where a range is given.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import MarlinError
from .prefetch import prefetch
from .sparse_decode import sparse_stream

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

# --- speed knobs (results do not depend on them)
# Frames per decode chunk: big enough to amortise the calls, small enough that decoded 1080p frames
# (4 x 6 MB) are resized soon; 2, 4 and 8 measure the same on 2 cores (bench/preprocess.py --sweep).
RESIZE_CHUNK_FRAMES = 4
# Chunks the decoder thread may run ahead of the resizing (each holds chunk_frames full-resolution frames).
DECODE_AHEAD_CHUNKS = 2
# Decode a copy of the stream without the frames no sampled frame depends on (sparse_decode.py); False
# decodes the file as the reference does (same frames, more work), e.g. to compare the two.
SPARSE_DECODE = True
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


# ---------------------------------------------------------------------------------------------------- errors

# What to do about a file FFmpeg opens but cannot decode.
REENCODE_HINT = "the file may be corrupt or truncated: re-export it or re-encode it (ffmpeg -i in.mp4 -c:v libx264 out.mp4)"


class VideoError(Exception):
    """A video that cannot be used; the message is ``"<path>: <cause>"`` plus what to do.

    Attributes:
        path: the file concerned.
        cause: the reason, without the path.
    """

    def __init__(self, path: str | Path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class VideoNotFoundError(VideoError):
    """No file at that path."""


class EmptyVideoFileError(VideoError):
    """The file has 0 bytes."""


class NotAVideoError(VideoError):
    """FFmpeg cannot read the file as a media container (or it is a directory)."""


class NoVideoStreamError(VideoError):
    """The container holds no video stream (e.g. audio only)."""


class UndecodableVideoError(VideoError):
    """The video stream exists but its frames cannot be decoded (corrupt or truncated data)."""


class NoFramesError(VideoError):
    """The video stream holds no frames."""


class VideoTooShortError(VideoError):
    """Fewer than 2 frames in the video or the requested window: nothing to sample a frame pair from."""


class SamplingOptionError(MarlinError, ValueError):
    """A sampling option out of range; the message names it and the accepted values."""


# ---------------------------------------------------------------------------------------------------- probe


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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoNotFoundError(path, "no such file; check the path (relative paths start at the working directory)")
    if path.is_dir():
        raise NotAVideoError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise EmptyVideoFileError(path, "the file is empty (0 bytes); re-copy or re-export it")
    if not os.access(path, os.R_OK):
        raise VideoError(path, "permission denied; make the file readable for this user")


def _classify_open_failure(path: Path, error: Exception) -> VideoError:
    """Turn a failed torchcodec open into the VideoError that says why, by reading the container header."""
    from torchcodec.decoders import Demuxer, get_container_metadata

    try:
        container = get_container_metadata(path)
    except Exception as header_error:  # noqa: BLE001 - any failure here means FFmpeg cannot parse the file
        return NotAVideoError(
            path, f"not a video file FFmpeg can read ({_first_line(header_error)}); check that it is a video "
            "(mp4, mov, mkv, webm, avi, ...) and that it was copied completely"
        )
    kinds = [stream.media_type for stream in container.streams]
    if container.best_video_stream_index is None and "video" not in kinds:
        if "audio" in kinds:
            return NoVideoStreamError(path, "no video stream (audio only); Marlin needs a video track")
        held = ", ".join(kinds) if kinds else "no streams at all"
        return NoVideoStreamError(path, f"no video stream (the file holds {held})")
    try:
        next(iter(Demuxer(path, streams="video")))
    except StopIteration:
        return NoFramesError(path, f"the video stream holds no frames; {REENCODE_HINT}")
    except Exception:  # noqa: BLE001 - an unreadable stream is reported as undecodable below
        pass
    return UndecodableVideoError(path, f"the video stream cannot be decoded ({_first_line(error)}); {REENCODE_HINT}")


def _first_line(error: Exception) -> str:
    """The useful part of a torchcodec/FFmpeg message (they start with a C++ source location)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rsplit(", ", 1)[-1] if ".cpp:" in text else text


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


def _open(path: str | Path):
    """Open ``path`` with torchcodec (exact seek mode, like the reference) and describe it.

    Returns:
        ``(decoder, VideoInfo)``.

    Raises:
        VideoError: a subclass naming the cause.
    """
    from torchcodec.decoders import VideoDecoder

    path = Path(path)
    _check_file(path)
    try:
        decoder = VideoDecoder(str(path), num_ffmpeg_threads=decode_threads())
    except (RuntimeError, ValueError) as error:
        raise _classify_open_failure(path, error) from error
    meta = decoder.metadata
    if not meta.num_frames:
        raise NoFramesError(path, f"the video stream holds no frames; {REENCODE_HINT}")
    info = VideoInfo(
        path=path,
        duration_s=float(meta.duration_seconds or meta.num_frames / meta.average_fps),
        fps=float(meta.average_fps),
        num_frames=int(meta.num_frames),
        width=int(meta.width),
        height=int(meta.height),
        rotation_deg=float(meta.rotation or 0.0),
        codec=meta.codec,
    )
    return decoder, info


def _decode(decoder, path: Path, indices: list[int]) -> torch.Tensor:
    try:
        return decoder.get_frames_at(indices=indices).data
    except (RuntimeError, ValueError, IndexError) as error:
        raise UndecodableVideoError(
            path, f"frames {indices[0]}-{indices[-1]} cannot be decoded ({_first_line(error)}); {REENCODE_HINT}"
        ) from error


def video_info(path: str | Path) -> VideoInfo:
    """Describe ``path`` from torchcodec's scan of its packets, decoding nothing (see :func:`probe`).

    Raises:
        VideoError: a subclass naming the cause, when the file cannot be opened as a video.
    """
    return _open(path)[1]


def probe(path: str | Path) -> VideoInfo:
    """Check that ``path`` is a decodable video and describe it; decodes only the first frame.

    Args:
        path: the video file.

    Returns:
        Its :class:`VideoInfo`.

    Raises:
        VideoNotFoundError, EmptyVideoFileError, NotAVideoError, NoVideoStreamError, NoFramesError,
        UndecodableVideoError: the cause is in the message, after the path.
    """
    decoder, info = _open(path)
    _decode(decoder, info.path, [0])
    return info


# ---------------------------------------------------------------------------------------------------- sampling


def _round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor


def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


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
        ignored_env: environment variables that were set but ignored (name -> value).
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
    ignored_env: dict[str, str] = field(default_factory=dict)

    @property
    def window_frames(self) -> int:
        """Frames in the window (the reference's ``total_num_frames``)."""
        return self.last_frame - self.first_frame + 1

    @property
    def start_s(self) -> float:
        """Time of the window's first frame, in seconds (``first_frame / video_fps``)."""
        return self.first_frame / self.video_fps

    def describe(self) -> str:
        """One line saying what was sampled and how frames are resized, for logs and reports."""
        end_s = (self.last_frame + 1) / self.video_fps
        text = (
            f"{len(self.frame_indices)} frames (indices {self.frame_indices[0]}..{self.frame_indices[-1]}) of "
            f"{self.window_frames} in {self.start_s:.2f}-{end_s:.2f} s at {self.options.fps:g} fps "
            f"(video {self.video_fps:.3f} fps), resized {self.source_width}x{self.source_height} -> "
            f"{self.width}x{self.height} (pixels per frame {self.min_pixels}..{int(self.max_pixels)}, "
            f"MODEL_SEQ_LEN {self.model_seq_len})"
        )
        if self.ignored_env:
            text += "; ignored env " + ", ".join(f"{k}={v}" for k, v in sorted(self.ignored_env.items()))
        return text


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
        ignored = ignored_environment()
        _warn_ignored_environment(ignored)
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
            ignored_env=ignored,
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


# ---------------------------------------------------------------------------------------------------- decode + resize


@dataclass(frozen=True, eq=False)
class SampledVideo:
    """The sampled, resized frames of one video (or window), ready for the processor.

    Attributes:
        path: the video file.
        info: its :class:`VideoInfo`.
        plan: the :class:`SamplingPlan` that produced the frames (``plan.describe()`` says what was used).
        frames: uint8 tensor ``(T, 3, H, W)``, contiguous; equal in value to qwen-vl-utils' float32 frames.
    """

    path: Path
    info: VideoInfo
    plan: SamplingPlan
    frames: torch.Tensor

    @property
    def options(self) -> SamplingOptions:
        return self.plan.options

    @property
    def metadata(self) -> dict:
        """The video metadata exactly as ``process_vision_info(..., return_video_metadata=True)`` returns it.

        ``frames_indices`` are 0-based frame indices of the whole video; the processor writes the timestamp
        ``<t seconds>`` of each frame pair from them as ``index / fps``.
        """
        return {
            "fps": self.plan.video_fps,
            "frames_indices": list(self.plan.frame_indices),
            "total_num_frames": self.plan.window_frames,
            "video_backend": VIDEO_BACKEND,
        }

    @property
    def video_kwargs(self) -> dict:
        """The processor kwargs ``process_vision_info(..., return_video_kwargs=True)`` returns with metadata."""
        return {"do_sample_frames": False}


def resize_frames(frames: torch.Tensor, height: int, width: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Antialiased bicubic resize of uint8 frames, bit-identical to qwen-vl-utils' torchvision call.

    torchvision's ``resize`` on a uint8 tensor casts to float32, interpolates (bicubic, antialias), clamps to
    0..255 and rounds; this does the same operations one frame at a time through one reused contiguous
    float buffer (each output value is computed by the same kernel from the same inputs, so the result is
    equal), which keeps the working set in cache: 3x less CPU than resizing the clip as one float tensor.

    Args:
        frames: uint8 ``(T, 3, H, W)``, any memory layout.
        height, width: target size in pixels.
        out: uint8 ``(T, 3, height, width)`` to write into; allocated when None.

    Returns:
        ``out``.
    """
    count, channels = frames.shape[:2]
    if out is None:
        out = torch.empty((count, channels, height, width), dtype=torch.uint8)
    source = torch.empty((1, *frames.shape[1:]), dtype=torch.float32)
    for k in range(count):
        source.copy_(frames[k : k + 1])
        resized = F.interpolate(source, size=[height, width], mode="bicubic", align_corners=False, antialias=True)
        out[k : k + 1].copy_(resized.clamp_(0, 255).round_())
    return out


def decode_chunks(count: int, chunk_frames: int) -> list[tuple[int, int]]:
    """``(start, stop)`` positions of the sampled frames to decode together: the first frame alone (so resizing
    starts as soon as it is decoded), then ``chunk_frames`` at a time."""
    bounds = [0, *range(1, count, chunk_frames), count]
    return list(zip(bounds, bounds[1:]))


def resize_threads() -> int:
    """Torch threads for resizing while the decoder thread decodes: half the cores, at least one.

    Both run at once; with all of torch's threads the idle ones spin waiting for work and slow the decoder
    down (on 2 cores, 1 torch thread makes loading ~15% faster than 2).
    """
    return max(1, torch.get_num_threads() // 2)


@contextmanager
def _torch_threads(count: int):
    """Use ``count`` torch threads in this thread for the duration (a per-thread setting; restored after)."""
    previous = torch.get_num_threads()
    if count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# Stream metadata that decides how torchcodec turns decoded pictures into RGB frames: the sparse copy must
# keep every one of them.
PIXEL_METADATA = ("codec", "width", "height", "rotation", "pixel_aspect_ratio", "pixel_format", "color_primaries",
                  "color_space", "color_transfer_characteristic")


class _FrameReader:
    """Decodes chunks of the sampled frames: from a :class:`SparseStream` when there is one, else the file.

    Every chunk decoded from the sparse copy is checked against the timestamps the original file gives those
    frames; on a mismatch or a decoding error the reader falls back to the original file for good.
    """

    def __init__(self, decoder, info: VideoInfo, indices: list[int]):
        self.decoder, self.path, self.indices = decoder, info.path, indices
        self.sparse = sparse_stream(info.path, indices, info.num_frames) if SPARSE_DECODE else None
        self.sparse_decoder = None
        if self.sparse is not None:
            from torchcodec.decoders import VideoDecoder

            try:
                self.sparse_decoder = VideoDecoder(self.sparse.data, num_ffmpeg_threads=decode_threads())
            except (RuntimeError, ValueError) as error:
                self._give_up_sparse(f"cannot be opened ({_first_line(error)})")
            else:
                copy, original = self.sparse_decoder.metadata, decoder.metadata
                if copy.num_frames != self.sparse.kept:
                    self._give_up_sparse(f"holds {copy.num_frames} frames, not {self.sparse.kept}")
                elif differing := [key for key in PIXEL_METADATA if getattr(copy, key) != getattr(original, key)]:
                    self._give_up_sparse(f"describes its frames differently ({', '.join(differing)})")

    @property
    def frames_decoded(self) -> str:
        """How many frames decoding reads, for logs and benchmarks."""
        if self.sparse_decoder is None:
            return "all frames up to the last sampled one"
        return f"{self.sparse.kept} of {self.sparse.total} frames"

    def read(self, start: int, stop: int) -> torch.Tensor:
        """uint8 ``(stop - start, 3, H, W)``: the sampled frames ``start:stop`` (positions in ``indices``)."""
        if self.sparse_decoder is not None:
            try:
                batch = self.sparse_decoder.get_frames_at(indices=self.sparse.indices[start:stop])
            except (RuntimeError, ValueError, IndexError) as error:
                self._give_up_sparse(f"cannot be decoded ({_first_line(error)})")
            else:
                expected = torch.tensor(self.sparse.pts_s[start:stop], dtype=batch.pts_seconds.dtype)
                if torch.allclose(batch.pts_seconds, expected, rtol=0, atol=1e-6):
                    return batch.data
                self._give_up_sparse("gives other timestamps than the file")
        return _decode(self.decoder, self.path, self.indices[start:stop])

    def _give_up_sparse(self, why: str) -> None:
        logger.warning("%s: decoding every frame (the reference does too): the copy without unneeded frames %s",
                       self.path, why)
        self.sparse_decoder = None


def load_video(path: str | Path, options: SamplingOptions | None = None, *, chunk_frames: int = RESIZE_CHUNK_FRAMES) -> SampledVideo:
    """Decode and resize the frames qwen-vl-utils would sample from ``path``; equal to its frames, faster.

    The sampled frames are decoded (from a sparse copy of the stream when possible, see
    :mod:`marlin_core.sparse_decode`) ``chunk_frames`` at a time in a background thread while the previous
    chunk is resized here, so at most ``DECODE_AHEAD_CHUNKS + 1`` chunks of full-resolution frames are in
    memory at once, however long the video.

    Args:
        path: the video file.
        options: sampling options; None = the reference defaults.
        chunk_frames: frames per decode/resize step (speed and memory only).

    Returns:
        The :class:`SampledVideo`.

    Raises:
        VideoError: a subclass naming the file and the cause (see :func:`probe`, plus VideoTooShortError).
    """
    options = options or SamplingOptions()
    decoder, info = _open(path)
    plan = options.resolve(info)
    indices = list(plan.frame_indices)
    reader = _FrameReader(decoder, info, indices)
    chunks = decode_chunks(len(indices), chunk_frames)
    frames = None
    decoding = prefetch(chunks, lambda chunk: reader.read(*chunk), depth=DECODE_AHEAD_CHUNKS)
    with closing(decoding):  # an error stops the decoder thread at once
        for k, ((start, stop), decoded) in enumerate(decoding):
            if isinstance(decoded, Exception):
                raise decoded
            if frames is None:
                plan = _fit_plan(plan, options, info, decoded)
                frames = torch.empty((len(indices), decoded.shape[1], plan.height, plan.width), dtype=torch.uint8)
            # While the decoder works, resize on half the cores; the last chunk gets them all.
            last = k + 1 == len(chunks)
            with _torch_threads(torch.get_num_threads() if last else resize_threads()):
                resize_frames(decoded, plan.height, plan.width, out=frames[start:stop])
            del decoded
    logger.debug("%s: decoded %s", info.path, reader.frames_decoded)
    return SampledVideo(path=info.path, info=info, plan=plan, frames=frames)


def _fit_plan(plan: SamplingPlan, options: SamplingOptions, info: VideoInfo, decoded: torch.Tensor) -> SamplingPlan:
    """Re-plan the frame size when decoded frames differ in size from the metadata (the reference uses the frames)."""
    height, width = decoded.shape[-2:]
    if (height, width) == (plan.source_height, plan.source_width):
        return plan
    return options.resolve(info, frame_height=height, frame_width=width)
