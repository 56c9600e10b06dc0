"""Engine benchmarks on the tiny checkpoint (CPU): ratios measured in the same run.

1. K queries on one 60 s video: ``find_many`` vs K independent ``find`` calls.
2. Caption of 8 clips: batched (``batch_size=4``) vs one at a time, and decode prefetch on vs off.

The tiny model makes the model part cheap, so these numbers show the overhead we remove
(decoding, preprocessing, vision encoding, prefill); on the real 2B model on a GPU the shared
prefix is the bulk of a find call, so ``find_many`` saves more. Run: ``python bench/engine.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tiny_model  # noqa: E402
from media import make_video  # noqa: E402

from marlin_core import Marlin  # noqa: E402
from marlin_core.video import load_video  # noqa: E402


REPEATS = 3  # the machine is noisy: each figure is the best of REPEATS runs


def timed(call):
    """``(best wall seconds of REPEATS runs, result of the last run)``."""
    best, result = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = tiny_model.build_tiny_checkpoint(root / "model", seed=0)
        marlin = Marlin.from_pretrained(model_dir)
        settings = dict(max_new_tokens=16)

        long_video = make_video(root / "long.mp4", size="640x360", fps=25, seconds=60)
        queries = [f"event number {i}" for i in range(args.queries)]
        marlin.find(long_video, queries[0], **settings)  # warm-up
        one_s, _ = timed(lambda: marlin.find(long_video, queries[0], **settings))
        many_s, many = timed(lambda: marlin.find_many(long_video, queries, **settings))
        single_s, single = timed(lambda: [marlin.find(long_video, q, **settings) for q in queries])
        same = [r["raw"] for r in many] == [r["raw"] for r in single]
        print(f"find on a 60 s 640x360 video, K={args.queries} queries (tiny model, CPU)")
        print(f"  one find call        {one_s:7.2f} s")
        print(f"  {args.queries} find calls        {single_s:7.2f} s")
        print(f"  find_many            {many_s:7.2f} s   = {many_s / one_s:.2f}x one call, "
              f"{single_s / many_s:.2f}x faster than {args.queries} calls; same answers: {same}")

        clips = [make_video(root / f"clip{i}.mp4", size="1280x720", fps=30, seconds=8) for i in range(args.clips)]
        caption = dict(max_new_tokens=32)
        decode_s, _ = timed(lambda: [load_video(c) for c in clips])
        one_by_one_s, _ = timed(lambda: list(marlin.iter_captions(clips, batch_size=1, prefetch_depth=0, **caption)))
        prefetch_s, _ = timed(lambda: list(marlin.iter_captions(clips, batch_size=1, prefetch_depth=1, **caption)))
        batched_s, _ = timed(lambda: list(marlin.iter_captions(clips, batch_size=4, prefetch_depth=1, **caption)))
        model_s = one_by_one_s - decode_s
        print(f"caption of {args.clips} 8 s 720p clips (tiny model, CPU; best of {REPEATS})")
        print(f"  stages: decode+resize {decode_s:.2f} s, processor+model {model_s:.2f} s, sum {one_by_one_s:.2f} s")
        print(f"  one at a time, no prefetch   {one_by_one_s:7.2f} s   wall/sum {one_by_one_s / one_by_one_s:.2f}")
        print(f"  one at a time, prefetch      {prefetch_s:7.2f} s   wall/sum {prefetch_s / one_by_one_s:.2f}")
        print(f"  batch 4, prefetch            {batched_s:7.2f} s   wall/sum {batched_s / one_by_one_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
