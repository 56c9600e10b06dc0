"""Exceptions that cross the library's public boundary, and the one way to print one as a line.

Everything a user can act on (a model that cannot be loaded, a bad option, a video that cannot be used)
derives from :class:`MarlinError`, so the CLI and the FiftyOne operators catch one root and print one clear
line instead of a stack trace.
"""

from __future__ import annotations

__all__ = ["MarlinError", "ModelLoadError", "error_summary"]


class MarlinError(Exception):
    """Base class for errors a user can fix (bad model path, bad option, unusable video)."""


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
