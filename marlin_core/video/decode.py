"""Decode the frames :mod:`.sampling` picks, as qwen-vl-utils does, in less time and memory.

Why this module exists: the reference (qwen-vl-utils 0.0.14 -> torchcodec ``get_frames_at``, exact seek
mode) decodes every frame up to each sampled one and holds the whole clip as float32. Here:

* the sampled frames come out of torchcodec ``get_frames_at``, as in the reference, but from a copy of the
  H.264/HEVC stream without the frames no sampled frame depends on (:mod:`._sparse`: ~40% fewer frames
  decoded on x264's default B-frames, same decoder, same pixels), in chunks, and the resize of one chunk
  (:mod:`.resize`) overlaps the decoding of the next in a decoder thread;
* frames are kept as uint8 (the reference returns the same integer values as float32, 4x the memory;
  the processor turns both into identical ``pixel_values_videos``);
* every failure is a :class:`~marlin_core.errors.VideoError` naming the file and the cause, found by
  reading the container when torchcodec cannot open it.

Frame indices in this module are 0-based decoder indices (torchcodec's), inclusive where a range is given.
"""

from __future__ import annotations

import logging
import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import (
    EmptyVideoFileError,
    NoFramesError,
    NotAVideoError,
    NoVideoStreamError,
    UndecodableVideoError,
    VideoError,
    VideoNotFoundError,
)
from ..prefetch import prefetch
from ._sparse import sparse_stream
from .resize import _torch_threads, resize_frames, resize_threads
from .sampling import VIDEO_BACKEND, SamplingOptions, SamplingPlan, VideoInfo, decode_threads

__all__ = ["RESIZE_CHUNK_FRAMES", "SampledVideo", "decode_chunks", "load_video", "probe", "video_info"]

logger = logging.getLogger(__name__)

# --- speed knobs (results do not depend on them)
# Frames per decode chunk: big enough to amortise the calls, small enough that decoded 1080p frames
# (4 x 6 MB) are resized soon; 2, 4 and 8 measure the same on 2 cores (bench/preprocess.py --sweep).
RESIZE_CHUNK_FRAMES = 4
# Chunks the decoder thread may run ahead of the resizing (each holds chunk_frames full-resolution frames).
DECODE_AHEAD_CHUNKS = 2
# Decode a copy of the stream without the frames no sampled frame depends on (_sparse.py); False
# decodes the file as the reference does (same frames, more work), e.g. to compare the two.
SPARSE_DECODE = True

# What to do about a file FFmpeg opens but cannot decode.
REENCODE_HINT = "the file may be corrupt or truncated: re-export it or re-encode it (ffmpeg -i in.mp4 -c:v libx264 out.mp4)"


# ---------------------------------------------------------------------------------------------------- open + probe


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


# ---------------------------------------------------------------------------------------------------- decode


@dataclass(frozen=True, eq=False)
class SampledVideo:
    """The sampled, resized frames of one video (or window), ready for the processor.

    Attributes:
        path: the video file.
        info: its :class:`VideoInfo`.
        plan: the :class:`SamplingPlan` that produced the frames (what was sampled, at what size, from what).
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


def decode_chunks(count: int, chunk_frames: int) -> list[tuple[int, int]]:
    """``(start, stop)`` positions of the sampled frames to decode together: the first frame alone (so resizing
    starts as soon as it is decoded), then ``chunk_frames`` at a time."""
    bounds = [0, *range(1, count, chunk_frames), count]
    return list(zip(bounds, bounds[1:]))


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
    :mod:`._sparse`) ``chunk_frames`` at a time in a background thread while the previous
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
