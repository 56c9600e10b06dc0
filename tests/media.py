"""Videos made with ffmpeg for tests and benchmarks.

A module of its own, free of side effects, so benchmarks can use it without importing ``conftest`` (which
sets up FiftyOne's test database and pins torch to one thread).
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def make_video(path: Path, *, source: str = "testsrc2", size: str = "128x96", fps: float = 10,
               seconds: float = 2.0, extra: list[str] | None = None) -> Path:
    """Write an H.264 clip with ffmpeg (``testsrc2`` pattern or ``color=<name>``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source.startswith("color="):
        lavfi = f"color=c={source.split('=', 1)[1]}:s={size}:r={fps}:d={seconds}"
    else:
        lavfi = f"{source}=size={size}:rate={fps}:duration={seconds}"
    ffmpeg("-f", "lavfi", "-i", lavfi, *(extra or []), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    return path


def make_clip(path: Path, size: str, fps: float, seconds: float, *, filters: str | None = None,
              pix_fmt: str = "yuv420p", extra: tuple[str, ...] = ()) -> Path:
    """An H.264 ``testsrc2`` clip (moving, detailed content: resize rounding differences would show)."""
    vf = ["-vf", filters] if filters else []
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}", *vf, *extra,
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", pix_fmt, str(path))
    return path
