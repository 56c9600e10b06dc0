"""Exceptions that cross the library's public boundary, and the one way to print one as a line.

Everything a user can act on (a model that cannot be loaded, a bad option, a video that cannot be used)
derives from :class:`MarlinError`, so the CLI and the FiftyOne operators catch one root and print one clear
line instead of a stack trace.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EmptyVideoFileError", "MarlinError", "ModelLoadError", "NoFramesError", "NoVideoStreamError", "NotAVideoError",
    "SamplingOptionError", "UndecodableVideoError", "VideoError", "VideoNotFoundError", "VideoTooShortError",
    "error_summary",
]


class MarlinError(Exception):
    """Base class for errors a user can fix (bad model path, bad option, unusable video)."""


class SamplingOptionError(MarlinError, ValueError):
    """A video sampling option out of range; the message names it and the accepted values."""


class VideoError(MarlinError):
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


class ModelLoadError(MarlinError):
    """The model or processor could not be loaded; the message says how to fix it."""


def error_summary(error: BaseException, where: str | None = None) -> str:
    """One line for ``error``: the first line of its message (its class name when it has none).

    A C++ source location that torchcodec puts before FFmpeg's message is dropped.

    Args:
        error: any exception.
        where: what the error is about (a file path, a sample id); prefixed as ``"<where>: <Class>: <line>"``
            unless the message already names it (video errors name their file).

    Returns:
        A single line without a trailing newline.
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    if ".cpp:" in line:
        # torchcodec/FFmpeg messages start with a C++ source location; the cause is after the last ", ".
        line = line.rsplit(", ", 1)[-1]
    if where is None or str(where) in line:
        return line
    return f"{where}: {type(error).__name__}: {line}"
