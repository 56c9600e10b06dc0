"""Exceptions that cross the library's public boundary.

Video problems have their own hierarchy in :mod:`marlin_core.video`; everything else a user can act on
(a model that cannot be loaded, bad arguments) derives from :class:`MarlinError`, so the CLI and the
FiftyOne operators can print one clear line instead of a stack trace.
"""


class MarlinError(Exception):
    """Base class for errors a user can fix (bad model path, bad option)."""


class ModelLoadError(MarlinError):
    """The model or processor could not be loaded; the message says how to fix it."""
