"""A video file's metadata as ffprobe reads it, probed once per file version in a process.

Every run checks each sample's stored metadata against its file (:func:`.processing.checked_metadata`),
and ``fo.VideoMetadata.build_for`` starts an ``ffprobe`` for that (~60 ms of CPU). An App server or a
delegated worker runs caption, find and search over the same library again and again; the files rarely
change between runs, so the answer is kept per file *version*: the file's device, inode, size, and
modification and change times in nanoseconds. Copying another file in place, editing it, or moving
another file to its path changes that key (the change time cannot be set by a user), so a changed file
is always probed again. Failures are never kept.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import fiftyone as fo

__all__ = ["probe_metadata"]

# File versions remembered (an entry is a few hundred bytes); the least recently used is dropped first.
MAX_REMEMBERED = 8192

_lock = threading.Lock()
_probed: OrderedDict[tuple, dict] = OrderedDict()


def _version(path: str) -> tuple | None:
    """What identifies this version of the file, or None when the path is not a local file."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):  # a missing file (ffprobe says why), a cloud path, a NUL in the name
        return None
    return path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def probe_metadata(path: str) -> fo.VideoMetadata:
    """``fo.VideoMetadata.build_for(path)``, probed again only when the file changed since the last probe.

    Returns a new document each call (callers store it on samples).

    Raises:
        whatever ``build_for`` raises for this file (ffprobe's failures have no common type).
    """
    before = _version(path)
    with _lock:
        known = _probed.get(before) if before else None
        if known is not None:
            _probed.move_to_end(before)
    if known is not None:
        return fo.VideoMetadata.from_dict(known)
    metadata = fo.VideoMetadata.build_for(path)
    if before is not None and _version(path) == before:  # not changed while ffprobe read it
        with _lock:
            _probed[before] = metadata.to_dict()
            while len(_probed) > MAX_REMEMBERED:
                _probed.popitem(last=False)
    return metadata
