"""What the client pays per video to send frames to a vLLM server: CPU seconds and bytes, per frame format.

For a 10 s and a 120 s 1080p clip (testsrc2, H.264, 30 fps), in one process on this machine: the
sampling (decode + resize, the reference way; paid by the in-process path too), then each frame format's
encoding into the request (PIL encode + base64): ``webp`` (lossless, fastest method), ``png`` (zlib level 1,
the default), ``ppm`` (uncompressed; vLLM's frame loader opens each with PIL), ``jpeg`` (q95, lossy).
Each format is decoded back the way vLLM's loader does (base64 -> PIL -> numpy) and compared with the
sampled pixels, so "lossless" is checked, not assumed. CPU seconds are this process's user + system time
(resource.getrusage), so threads count; wall seconds beside them.

No server time is measured here (no GPU on this machine; a CPU vLLM's time says nothing about a GPU's):
the printed ratio is each encoding's cost against the sampling the video needs anyway.
Run: ``python bench/serving_transport.py [--seconds 10 120]``.
"""

from __future__ import annotations

import argparse
import base64
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from media import make_clip  # noqa: E402

from marlin_core.serving.chat_request import FRAME_FORMATS, video_part  # noqa: E402
from marlin_core.video import load_video  # noqa: E402


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(work):
    cpu, wall = cpu_s(), time.perf_counter()
    result = work()
    return result, cpu_s() - cpu, time.perf_counter() - wall


def decoded_back(url: str) -> np.ndarray:
    """The frames as vLLM's frame-list loader reads them (split on ',', base64, PIL, numpy)."""
    frames = url.split(",", 1)[1].split(",")
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(f))).convert("RGB")) for f in frames])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 120.0], help="clip lengths")
    parser.add_argument("--work", type=Path, default=None, help="folder for the clips (kept clips are reused)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="serving-transport-"))
    print("client cost per video, 1080p testsrc2 H.264 30 fps, this CPU (one process):")
    print(f"  {'clip':>6} {'step':<22} {'cpu s':>7} {'wall s':>7} {'MB sent':>8} {'x sampling':>10}  pixels")
    for seconds in args.seconds:
        clip = work / f"clip-{seconds:g}s.mp4"
        if not clip.is_file():
            make_clip(clip, "1920x1080", 30, seconds)
        sampled, sample_cpu, sample_wall = measured(lambda: load_video(clip))
        frames = sampled.frames.permute(0, 2, 3, 1).numpy()
        shape = "x".join(map(str, frames.shape[:3]))
        print(f"  {seconds:>5g}s {'sampling + resize':<22} {sample_cpu:7.2f} {sample_wall:7.2f} {'':>8} "
              f"{1.0:>9.2f}x  {shape} (T x H x W)")
        for name in FRAME_FORMATS:
            part, encode_cpu, encode_wall = measured(lambda n=name: video_part(sampled, frame_format=n))
            url = part.content["video_url"]["url"]
            back = decoded_back(url)
            delta = np.abs(back.astype(np.int16) - frames.astype(np.int16))
            pixels = "identical" if not delta.any() else f"max diff {delta.max()}, mean {delta.mean():.2f}"
            print(f"  {seconds:>5g}s {'encode ' + name + ' + base64':<22} {encode_cpu:7.2f} {encode_wall:7.2f} "
                  f"{len(url) / 1e6:8.1f} {encode_cpu / sample_cpu:>9.2f}x  {pixels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
