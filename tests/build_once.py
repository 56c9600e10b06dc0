"""Test artefacts built once for all pytest-xdist workers and kept between sessions (``.cache``).

Several workers start at the same moment and all want the tiny checkpoints and the ffmpeg clips. Each
artefact is built by one process under an exclusive file lock (``fcntl.flock``: released by the kernel if
the builder dies), into a staging folder renamed into place when complete, so no worker ever reads half a
checkpoint and a killed build leaves nothing that looks finished. The others wait on the lock, then find it
built. Free of side effects on import (benchmarks may use it without conftest).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP_CACHE = REPO / ".cache" / "test-clips"


@contextmanager
def exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (created if missing) across processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(target: Path, is_built: Callable[[Path], bool], build: Callable[[Path], object]) -> Path:
    """``target`` when ``is_built(target)``; else ``build(staging)`` under the lock, renamed to ``target``.

    ``build`` gets an empty staging folder next to ``target`` and must fill it; an earlier ``target`` that is
    not built (another recipe, a crash before this locking existed) is replaced.
    """
    if is_built(target):
        return target
    with exclusive(target.with_name(f".{target.name}.lock")):
        if is_built(target):  # another worker built it while this one waited
            return target
        staging = target.with_name(f".{target.name}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            build(staging)
            if not is_built(staging):
                raise RuntimeError(f"building {target} left an incomplete result in {staging}")
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def cached_file(dest: Path, make: Callable[..., object], *args: object, **kwargs: object) -> Path:
    """A copy at ``dest`` of the file ``make(path, *args, **kwargs)`` writes, made once per set of arguments.

    The arguments must hold everything the file's bytes depend on besides code (no temporary paths); the
    source of ``make``'s module and of ``tests/media.py`` is part of the key, so a change there remakes it.
    Tests get their own copy: they may link, rename or change it.
    """
    sources = {Path(sys.modules[make.__module__].__file__), Path(__file__).with_name("media.py")}
    code = b"".join(path.read_bytes() for path in sorted(sources))
    key = repr((make.__module__, make.__qualname__, args, sorted(kwargs.items()))).encode()
    entry = CLIP_CACHE / f"{hashlib.sha1(key + code).hexdigest()[:16]}-{dest.name}"
    build_once(entry, lambda folder: (folder / dest.name).is_file(),
               lambda staging: make(staging / dest.name, *args, **kwargs))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(entry / dest.name, dest)
    return dest
