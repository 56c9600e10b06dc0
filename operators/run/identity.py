"""What a model is, for the settings fingerprint: its weights' content, not the string naming them.

The same weights reached as a hub id, a cached snapshot, a downloaded folder or a symlink under the
FiftyOne zoo folder get one identity, so a rerun skips samples done with them whatever the path; other
weights under the same path (a folder re-trained in place) get another.

The identity hashes the checkpoint's top-level ``*.json``, ``*.jinja`` and ``*.safetensors`` files by
name and SHA-256 of content. A file in the Hugging Face cache is a link to ``blobs/<sha256>`` for the
large (LFS) files, so its name is its hash and nothing is read; a plain folder is read once per process
(the digest is kept while the files' sizes and times stay the same). A hub id that is not in the local
cache, and a served model (``openai://``), are identified by their name and revision.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path

__all__ = ["weights_identity"]

PATTERNS = ("*.json", "*.jinja", "*.safetensors")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 8 << 20
_lock = threading.Lock()
_digests: dict[tuple, str] = {}  # (real path, size, mtime_ns) -> sha256
_folders: dict[tuple, str] = {}  # the folder's files as they are now -> identity
_snapshots: dict[tuple, tuple[float, Path | None]] = {}  # (hub id, revision, cache) -> (when looked up, folder)
# A hub id's cached snapshot is looked up again after this long (a download may have moved the ref).
SNAPSHOT_TTL_S = 30.0


def _file_sha256(path: Path) -> str:
    real = Path(os.path.realpath(path))
    if _SHA256.match(real.name) and real.parent.name == "blobs":
        return real.name  # the Hugging Face cache names LFS blobs by their SHA-256
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _digests:
            return _digests[key]
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    with _lock:
        _digests[key] = digest.hexdigest()
    return _digests[key]


def folder_identity(folder: Path) -> str | None:
    """``weights:<hash>`` of a checkpoint folder, or None when it holds no ``config.json``."""
    if not (folder / "config.json").is_file():
        return None
    files = sorted({path for pattern in PATTERNS for path in folder.glob(pattern) if path.is_file()})
    signature = (str(folder.resolve()),) + tuple((p.name, os.path.realpath(p), p.stat().st_size,
                                                  p.stat().st_mtime_ns) for p in files)
    with _lock:
        if signature in _folders:
            return _folders[signature]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{_file_sha256(path)}\n".encode())
    with _lock:
        _folders[signature] = f"weights:{digest.hexdigest()[:20]}"
        return _folders[signature]


def _cached_snapshot(model: str, revision: str | None) -> Path | None:
    """The local cache's snapshot folder of hub id ``model`` at ``revision``, without any network call."""
    if model.count("/") != 1 or "://" in model:
        return None
    from huggingface_hub import constants

    key = (model, revision, constants.HF_HUB_CACHE)
    with _lock:
        when, folder = _snapshots.get(key, (-SNAPSHOT_TTL_S, None))
    if time.monotonic() - when < SNAPSHOT_TTL_S:
        return folder
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or not a hub id): named instead
        folder = None
    with _lock:
        _snapshots[key] = (time.monotonic(), folder)
    return folder


def weights_identity(model: str, revision: str | None = None) -> str:
    """The identity of the weights ``model`` names (see the module docstring)."""
    path = Path(model).expanduser()
    identity = None
    if "://" not in model and path.is_dir():
        identity = folder_identity(path)
    elif (snapshot := _cached_snapshot(model, revision)) is not None:
        identity = folder_identity(snapshot)
    return identity or f"name:{model}@{revision or ''}"
