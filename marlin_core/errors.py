"""Exceptions that cross the library's public boundary.

Everything a user can act on (a model that cannot be loaded, a bad option, a video that cannot be used)
derives from :class:`MarlinError`, so the CLI and the FiftyOne operators catch one root and print one
clear line instead of a stack trace.
"""

from pathlib import Path


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
