"""Long-video benchmark: wall time and peak RSS of a windowed caption vs video length (tiny model, CPU).

Each length runs in its own process so its peak RSS (``ru_maxrss``) is its own. Videos are 1080p
``testsrc2`` made with ffmpeg. The tiny model cannot attend over a full-rate window's ~90k tokens on
a CPU, so frames are sampled at ``--fps`` (default 1) and capped at the minimum frame size; decoding
still reads and resizes 1080p frames, which is what the memory bound is about.
Run: ``python bench/long_video.py [--minutes 2 10 30]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from media import ffmpeg  # noqa: E402

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(2)
from marlin_core import Marlin
from marlin_core.video import VIDEO_MIN_PIXELS
marlin = Marlin.from_pretrained(sys.argv[1])
real_generate, calls = marlin.model.generate, []
def counting_generate(*args, **kwargs):
    calls.append(1)
    return real_generate(*args, **kwargs)
marlin.model.generate = counting_generate
windows = []
started = time.perf_counter()
result = marlin.caption(sys.argv[2], max_new_tokens=16, fps=float(sys.argv[3]), max_pixels=VIDEO_MIN_PIXELS,
                        window_progress=lambda done, total: windows.append(total))
print(json.dumps({"seconds": time.perf_counter() - started, "windows": windows[-1] if windows else 1,
                  "generate_calls": len(calls),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_1080p(path: Path, minutes: float) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=10:duration={minutes * 60}",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 10, 30])
    parser.add_argument("--fps", type=float, default=1.0)
    args = parser.parse_args()
    import tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = tiny_model.build_tiny_checkpoint(root / "model")
        print(f"windowed caption of 1080p video, sampled at {args.fps} fps (tiny model, CPU)")
        print(f"{'minutes':>8} {'windows':>8} {'generate':>9} {'wall s':>8} {'peak RSS MB':>12}")
        for minutes in args.minutes:
            video = make_1080p(root / f"{minutes}min.mp4", minutes)
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), str(video), str(args.fps)],
                                 capture_output=True, text=True, check=True, cwd=REPO)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{minutes:8.0f} {row['windows']:8d} {row['generate_calls']:9d} {row['seconds']:8.1f} "
                  f"{row['peak_rss_mb']:12.0f}   (process {time.perf_counter() - started:.1f} s)", flush=True)
            video.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
