"""Throughput of the same captions in-process and through a vLLM server, both warm, measured in one run.

Captions ``--videos`` clips (red and blue in turn) with the vLLM-shaped trained tiny checkpoint:
``Marlin`` in-process (transformers) and ``RemoteMarlin`` against a vLLM server started the way
``marlin serve`` starts it (:mod:`marlin_core.serving.vllm_process`), with 1, 4 and 16 requests in flight
and each lossless frame format. Load times (weights into the process; server start until ``/v1/models``
answers) are reported apart: every throughput row is measured after a warm-up pass, so no row pays a
load or a first-request initialisation. The client's CPU seconds (decode, resize, encoding, HTTP) are
shown beside each server row, and how many answers equal the in-process ones.

On a CPU box the figures say what the serving path costs or saves around a model this small, not what a
GPU server gives on Marlin-2B: run it on the GPU host with ``--model NemoStation/Marlin-2B`` for that (the
printed conditions say which). Run: ``python bench/serving_throughput.py [--videos 16] [--model M]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tiny_model  # noqa: E402

from marlin_core import Marlin  # noqa: E402
from marlin_core.serving import vllm_process as vp  # noqa: E402
from marlin_core.serving.remote import RemoteMarlin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The test suite's checkpoint cache (tests/conftest.py): reused when tiny_model.py and the clips are unchanged.
CHECKPOINTS = REPO / ".cache" / "test-checkpoints" / hashlib.sha1(
    (REPO / "tests" / "tiny_model.py").read_bytes()).hexdigest()[:12]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_captions(marlin, videos) -> tuple[float, float, list]:
    """Wall seconds, this process's CPU seconds, and the results of captioning ``videos``."""
    cpu, started = cpu_s(), time.perf_counter()
    results = [result for _, result in marlin.iter_captions(videos, max_new_tokens=64)]
    elapsed, used = time.perf_counter() - started, cpu_s() - cpu
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]
    return elapsed, used, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16, help="clips to caption per row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="requests in flight")
    parser.add_argument("--formats", nargs="+", default=["png", "webp"], help="frame formats to send")
    parser.add_argument("--model", default=None,
                        help="weights (folder or hub id) for both sides, e.g. NemoStation/Marlin-2B on a GPU host; "
                             "default: the tiny trained checkpoint")
    parser.add_argument("--gpu-memory-utilization", type=float, default=None,
                        help="the server's memory share (of RAM on vLLM's CPU build; default: marlin serve's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serving-throughput-"))
    clips = tiny_model.make_training_videos(work / "clips")
    model_dir = args.model or tiny_model.train_tiny_checkpoint(CHECKPOINTS / "trained-vllm", clips, shape="vllm")
    videos = [clips["red" if i % 2 == 0 else "blue"] for i in range(args.videos)]
    load_before = os.getloadavg()[0]

    started = time.perf_counter()
    local = Marlin.from_pretrained(model_dir)
    local_load_s = time.perf_counter() - started
    install = vp.find_vllm()
    port = vp.free_port()
    options = vp.ServeOptions(port=port, gpu_memory_utilization=args.gpu_memory_utilization)
    started = time.perf_counter()
    process = vp.start(install, str(model_dir), port, options, work / "server.log")
    url = f"http://127.0.0.1:{port}/v1"
    try:
        vp.wait_ready(process, url, str(model_dir), work / "server.log", options)
        server_load_s = time.perf_counter() - started
        address = f"openai://127.0.0.1:{port}/v1/{vp.SERVED_NAME}"
        timed_captions(RemoteMarlin.from_url(address), videos[:2])  # vLLM's lazy initialisation
        timed_captions(local, videos[:2])
        local_s, local_cpu, local_results = timed_captions(local, videos)
        expected = [r["caption"] for r in local_results]
        dtype = str(local.model.dtype).replace("torch.", "")
        rows = [(f"in-process (transformers, {dtype}), batch 1", local_s, local_cpu, len(videos))]
        for frame_format in args.formats:
            for limit in args.concurrency:
                remote = RemoteMarlin.from_url(address, max_concurrent=limit, frame_format=frame_format)
                remote_s, remote_cpu, results = timed_captions(remote, videos)
                equal = sum(r["caption"] == e for r, e in zip(results, expected))
                rows.append((f"vLLM server, {limit:2d} in flight, {frame_format}", remote_s, remote_cpu, equal))
    finally:
        vp.stop_group(process.pid)

    print(f"captions of {args.videos} clips (3 s, 96x96 -> 384x384 frames, 6 frames each), "
          f"{args.model or 'tiny trained checkpoint'};")
    print(f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), no GPU, load average "
          f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after; vLLM {install.python} "
          f"({'CPU build' if install.cpu else 'CUDA build'}); 'equal': answers equal to in-process.")
    print(f"load (apart): in-process weights {local_load_s:.1f} s; vLLM server start until /v1/models "
          f"{server_load_s:.1f} s")
    print(f"  {'warm, same clips':46s} {'wall':>8} {'videos/s':>9} {'vs in-process':>14} {'client cpu s':>13} "
          f"{'equal':>6}")
    for label, seconds, used, equal in rows:
        print(f"  {label:46s} {seconds:7.2f}s {args.videos / seconds:9.2f} {local_s / seconds:13.2f}x "
              f"{used:13.2f} {equal:>3}/{args.videos}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
