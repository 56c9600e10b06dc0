"""The engine against the reference path at Marlin-2B's shape (issue 16's table), reproducible; ``--small`` on a CPU.

Builds a checkpoint with random weights, makes clips with ffmpeg, then runs each path in a fresh process
(so peak memory and warm-up are each path's own) and prints one table:

- ``reference``: qwen-vl-utils ``process_vision_info`` + the processor + plain ``model.generate``, one video
  at a time (the seed's path, what Marlin's recorded outputs were made with);
- ``engine ...``: ``Marlin.iter_captions`` one at a time, with the default batch size (what the operators do
  with no settings: 1 on the CPU, automatic on CUDA), and batches of 4 and 8;
- ``find, one call per query`` / ``find_many``: ten queries (``--small``: four) on one longer video, and
  ``find_many`` with the shared-prefix pass computing full logits as before issue 16 (``find_many, full prefix
  logits``), for its peak memory.

Columns: wall seconds; items/s (videos; find rows: queries); ratio to the reference's wall (find rows: to
``find, one call per query``); peak memory
(CUDA: ``max_memory_allocated``; CPU: the process's peak RSS above the loaded model, glibc told to unmap
freed blocks so the RSS follows live memory); decode ms per step (a step = one forward of one token for the
whole batch); wait = wall seconds outside ``generate`` (decoding, preprocessing, parsing: the GPU idles);
same = answers whose text equals the reference's (find rows: ``find, one call per query``'s).

The model shape (``--small`` off): Qwen3.5-2B as the issue describes it (24 text layers, 3 gated-delta-net :
1 full-attention, hidden 2048, vocab 248,320, a 24-layer vision tower) — issue 16 and marlin-facts.md. The
remaining sizes are Qwen3.5-2B's public config.json as remembered here (not checked: no hub access in this
session): intermediate 6144, 8 query / 2 KV heads of 256 (partial rotary 0.25, M-RoPE [11, 11, 10]), linear
attention 16 key / 16 value heads of 128, conv kernel 4; vision hidden 1024, MLP 4096, 16 heads, patch 16,
temporal patch 2, merge 2, out 2048. ``--small`` keeps the full vocabulary (memory that scales with it shows)
on a tiny width. The tokenizer is the tests' small one (tests/tiny_model.py): prompts have Marlin's structure
and video tokens, and ids it does not know decode to nothing, which random weights do not mind.

Decode ms/step: from the end of a call's last prefill (the prompt, or find_many's query suffixes) to the end of
the call, over the decode steps it ran (a step = one new token for the whole batch, token choice included), so
``generate`` and the engine's decode loop (which never calls the model's ``forward`` per step, and on CUDA
replays a CUDA graph) are measured over the same span. ``engine, plain generate`` is the engine with
``decode="generate"`` (its preprocessing, ``generate``'s decoding); ``reference, batch 8`` is one plain ``generate``
over all clips (padded), to see how ``generate``'s step grows with the batch.

``--quick`` (CUDA, <= 8 minutes on a fresh H100/H200): one process; the random 2B-shape checkpoint is built
directly on the GPU in bfloat16 (no save/load), every path is warmed up once on one clip (Triton compiles,
CUDA-graph captures), then 8 clips of 10 s (720p/1080p), 96 new tokens, and find: 10 queries on a 30 s clip.
Pre-made clips can be passed with ``--clips DIR`` (``clip*.mp4`` + ``find.mp4``; the GPU machine has no ffmpeg:
make them here with ``--make-clips DIR``).

Run: ``python bench/gpu.py`` (CUDA, ~15 min), ``python bench/gpu.py --quick`` (CUDA, < 8 min) or
``python bench/gpu.py --small`` (CPU, a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

FULL = dict(clips=16, seconds=20.0, sizes=("1280x720", "1920x1080"), rate=30, new_tokens=256, find_seconds=60.0,
            find_tokens=64, queries=10)
SMALL = dict(clips=4, seconds=4.0, sizes=("192x144", "160x120"), rate=10, new_tokens=32, find_seconds=12.0,
             find_tokens=16, queries=4)
QUICK = dict(clips=8, seconds=10.0, sizes=("1280x720", "1920x1080"), rate=30, new_tokens=96, find_seconds=30.0,
             find_tokens=64, queries=10)
CAPTION_RUNS = {  # name -> iter_captions keyword arguments (None: the reference path)
    "reference": None,
    "reference, batch 8": None,
    "engine, plain generate": dict(batch_size=1),
    "engine, one at a time": dict(batch_size=1),
    "engine, default batch": dict(batch_size=None),
    "engine, batch 4": dict(batch_size=4),
    "engine, batch 8": dict(batch_size=8),
}
FIND_RUNS = ("find, one call per query", "find_many", "find_many, full prefix logits")
QUICK_RUNS = ("reference", "reference, batch 8", "engine, one at a time", "engine, batch 8",
              "find, one call per query", "find_many")


def model_config(tokenizer, small: bool):
    """Qwen3.5-2B's shape (see the module docstring), or a tiny width with the same vocabulary."""
    import tiny_model

    config = tiny_model.build_config(tokenizer)
    text, vision = config.text_config, config.vision_config
    text.vocab_size = 248_320
    if small:
        return config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = 2048, 6144, 24
    text.layer_types = (["linear_attention"] * 3 + ["full_attention"]) * 6
    text.num_attention_heads, text.num_key_value_heads, text.head_dim = 8, 2, 256
    text.linear_num_key_heads, text.linear_num_value_heads = 16, 16
    text.linear_key_head_dim = text.linear_value_head_dim = 128
    text.rope_parameters = dict(text.rope_parameters, mrope_section=[11, 11, 10])
    vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads = 24, 1024, 4096, 16
    vision.out_hidden_size, vision.num_position_embeddings = 2048, 2304
    return config


def build_model(small: bool, device: str = "cpu", dtype=None):
    """The random-weight model and the tests' processor, built in memory (on the GPU: seconds, not minutes)."""
    import torch
    from transformers import GenerationConfig, Qwen3_5ForConditionalGeneration

    import tiny_model

    processor = tiny_model.build_processor()
    config = model_config(processor.tokenizer, small)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3_5ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.generation_config = GenerationConfig(eos_token_id=config.text_config.eos_token_id,
                                               pad_token_id=config.text_config.pad_token_id, do_sample=False)
    return model.eval(), processor


def build_checkpoint(out: Path, small: bool) -> Path:
    model, processor = build_model(small)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------- one path (child)

def _rss_kib(field: str) -> int:
    return int(re.search(field + r":\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


class Meter:
    """Wall time inside generation calls, decode ms per step and peak memory, for one path on a loaded model.

    Generation calls are ``model.generate`` and the engine's decode loop (``DecodeLoop.generate`` /
    ``generate_queries``); a call's decode span runs from the end of its last prefill (a ``forward`` over more
    than one token) to the call's end, and its steps are the tokens it chose after the first. On the CPU the
    decode span is process CPU time (the children run one torch thread): on a shared machine, wall time mostly
    measures the other processes.
    """

    def __init__(self, marlin):
        import torch

        self.torch, self.model, self.cuda = torch, marlin.model, marlin.device.type == "cuda"
        self.generate_s = self.decode_s = 0.0
        self.decode_steps = self.tokens = 0
        self._prefill_end = None
        self._restore = []
        # (owner, method, (output, args, kwargs) -> (tokens chosen per row, rows))
        self._wrap(marlin.model, "generate", lambda out, args, kwargs: (
            out.shape[1] - kwargs["input_ids"].shape[1], out.shape[0]))
        if marlin.generator.decoder is not None:
            loop = marlin.generator.decoder
            self._wrap(loop, "generate", lambda out, args, kwargs: (out.tokens.shape[1], out.tokens.shape[0]))
            self._wrap(loop, "generate_queries", lambda out, args, kwargs: (
                max(r.tokens.shape[1] for r in out), sum(r.tokens.shape[0] for r in out)))
        self._hook = marlin.model.register_forward_hook(self._after, with_kwargs=True)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self.base_kib = _rss_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")

    def _sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def _clock(self) -> float:
        self._sync()
        return time.perf_counter() if self.cuda else time.process_time()

    def _wrap(self, owner, name: str, counts):
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            self._sync()
            started = time.perf_counter()
            self._prefill_end = None
            try:
                out = real(*args, **kwargs)
            finally:
                ended = self._clock()
                self.generate_s += time.perf_counter() - started
            new, rows = (int(n) for n in counts(out, args, kwargs))
            self.tokens += new * rows
            if new > 1 and self._prefill_end is not None:
                self.decode_s += ended - self._prefill_end
                self.decode_steps += new - 1
            return out

        setattr(owner, name, timed)
        self._restore.append((owner, name))

    def _after(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            self._prefill_end = self._clock()

    def close(self):
        for owner, name in self._restore:
            delattr(owner, name)  # the wrapper is an instance attribute over the class's method
        self._hook.remove()

    def peak_gib(self) -> float:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2**30
        return (_rss_kib("VmHWM") - self.base_kib) / 2**20


def run_child(name: str, model_dir: str, clips: list[str], find_video: str, settings: dict) -> dict:
    """Run one path in this (fresh) process; return its figures and answers."""
    import torch

    from marlin_core import Marlin

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # as the tests: on a small shared CPU more threads mostly wait on each other
    decode = "generate" if name == "engine, plain generate" else None
    return measure(Marlin.from_pretrained(model_dir, decode=decode), name, clips, find_video, settings)


def measure(marlin, name: str, clips: list[str], find_video: str, settings: dict) -> dict:
    """Run one path on a loaded model; return its figures and answers."""
    import torch

    from marlin_core.engine.generation import Generator

    meter = Meter(marlin)
    started = time.perf_counter()
    try:
        if name == "reference":
            texts = [reference_caption(marlin, [clip], settings["new_tokens"])[0] for clip in clips]
        elif name == "reference, batch 8":
            texts = []
            for start in range(0, len(clips), 8):
                texts += reference_caption(marlin, clips[start: start + 8], settings["new_tokens"])
        elif name in CAPTION_RUNS:
            texts = []
            for _, result in marlin.iter_captions(clips, max_new_tokens=settings["new_tokens"],
                                                  **CAPTION_RUNS[name]):
                texts.append(result["raw"] if isinstance(result, dict) else f"error: {result}")
        else:
            queries = [f"event number {i}" for i in range(settings["queries"])]
            if name == "find, one call per query":
                results = [marlin.find(find_video, q, max_new_tokens=settings["find_tokens"]) for q in queries]
            else:
                real = Generator.prefix_cache
                if name.endswith("full prefix logits"):
                    Generator.prefix_cache = _prefix_cache_with_full_logits
                try:
                    results = marlin.find_many(find_video, queries, max_new_tokens=settings["find_tokens"])
                finally:
                    Generator.prefix_cache = real
            texts = [r["raw"] for r in results]
        wall_s = time.perf_counter() - started
    finally:
        meter.close()
    items = len(clips) if name in CAPTION_RUNS else settings["queries"]
    return {"wall_s": wall_s, "items": items, "peak_gib": meter.peak_gib(), "texts": texts, "tokens": meter.tokens,
            "ms_per_step": 1000 * meter.decode_s / max(1, meter.decode_steps), "wait_s": wall_s - meter.generate_s,
            "device": str(marlin.device), "kernels": marlin.kernels(), "torch": torch.__version__}


def reference_caption(marlin, clips: list[str], new_tokens: int) -> list[str]:
    """The seed's path: qwen-vl-utils, the processor, a plain ``generate`` (several clips: one padded batch);
    decoded like the engine does."""
    import torch

    import tiny_model
    from marlin_core.contract import CAPTION_PROMPT
    from marlin_core.engine.inputs import collate_inputs

    rows = [tiny_model.reference_inputs(marlin.processor, clip, CAPTION_PROMPT) for clip in clips]
    inputs = rows[0] if len(rows) == 1 else collate_inputs(rows, marlin.processor.tokenizer.pad_token_id)
    inputs = inputs.to(marlin.device)
    with torch.inference_mode():
        sequences = marlin.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    texts = []
    for row in sequences[:, inputs["input_ids"].shape[1]:].tolist():
        eos = marlin.generator.eos_ids
        row = row[: next((i for i, t in enumerate(row) if t in eos), len(row))]
        texts.append(marlin.processor.tokenizer.decode(row, skip_special_tokens=True))
    return texts


def _prefix_cache_with_full_logits(self, inputs, prefix_len):
    """The shared-prefix pass as it was before issue 16: logits for every prefix position."""
    import torch

    with torch.inference_mode():
        prefix = {k: inputs[k][:, :prefix_len] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
        prefix.update(pixel_values_videos=inputs["pixel_values_videos"].to(self.model.dtype),
                      video_grid_thw=inputs["video_grid_thw"])
        return self.model(**{k: v.to(self.device) for k, v in prefix.items()}, use_cache=True).cache


# ---------------------------------------------------------------------------------------------- table (parent)

def make_clips(root: Path, shape: dict) -> tuple[list[str], str]:
    """The table's clips in ``root``: those already there (``clip*.mp4``, ``find.mp4``), else made with ffmpeg."""
    have = sorted(root.glob("clip*.mp4"), key=lambda p: int(p.stem[4:]))
    if len(have) >= shape["clips"] and (root / "find.mp4").is_file():
        return [str(p) for p in have[: shape["clips"]]], str(root / "find.mp4")
    from media import make_video

    clips = [str(make_video(root / f"clip{i}.mp4", size=shape["sizes"][i % 2], fps=shape["rate"],
                            seconds=shape["seconds"])) for i in range(shape["clips"])]
    find_video = str(make_video(root / "find.mp4", size=shape["sizes"][0], fps=shape["rate"],
                                seconds=shape["find_seconds"]))
    return clips, find_video


def run_path(name: str, args, model_dir: Path, clips: list[str], find_video: str, shape: dict) -> dict:
    spec = json.dumps({"name": name, "model_dir": str(model_dir), "clips": clips, "find_video": find_video,
                       "settings": shape})
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    out = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env,
                         cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_row(name: str, row: dict, rows: dict[str, dict], header: bool = False) -> None:
    if header:
        unit = "GiB" if row["device"].startswith("cuda") else "GiB RSS"
        print(f"{'path':32} {'wall s':>8} {'items/s':>9} {'tokens/s':>9} {'ratio':>7} {'peak ' + unit:>12} "
              f"{'ms/step':>8} {'wait s':>7} {'same':>6}", flush=True)
    base = rows.get("reference" if name in CAPTION_RUNS else "find, one call per query", row)
    expected = base["texts"]
    same = sum(a == b for a, b in zip(row["texts"], expected))
    print(f"{name:32} {row['wall_s']:8.2f} {row['items'] / row['wall_s']:9.3f} {row['tokens'] / row['wall_s']:9.1f} "
          f"{base['wall_s'] / row['wall_s']:6.2f}x {row['peak_gib']:12.3f} {row['ms_per_step']:8.1f} "
          f"{row['wait_s']:7.2f} {same:>3}/{len(expected)}", flush=True)


def print_table(rows: dict[str, dict]) -> None:
    for index, (name, row) in enumerate(rows.items()):
        print_row(name, row, rows, header=index == 0)
    first = rows["reference"]
    print(f"device {first['device']}, torch {first['torch']}, kernels {first['kernels']}")


def run_quick(clip_dir: Path | None, small: bool = False) -> int:
    """``--quick``: one process on CUDA, the model built on the GPU, each path warmed up once, then timed.

    With ``small`` it runs the same way on the CPU at the small shape (a check of this script, not a benchmark).
    """
    import torch

    from marlin_core import Marlin

    started = time.perf_counter()
    device = "cpu" if small else "cuda"
    model, processor = build_model(small=small, device=device, dtype=None if small else torch.bfloat16)
    print(f"built the model on {device} in {time.perf_counter() - started:.1f} s", flush=True)
    marlin = Marlin(model, processor, name_or_path="random Qwen3.5-2B shape")
    shape = dict(SMALL, clips=QUICK["clips"]) if small else QUICK
    with tempfile.TemporaryDirectory() as tmp:
        clips, find_video = make_clips(clip_dir or Path(tmp), shape)
        warm = dict(shape, new_tokens=4, find_tokens=4)
        started = time.perf_counter()
        for name in QUICK_RUNS:  # Triton compiles and autotunes, CUDA-graph captures (buckets 1-16)
            settings = dict(warm, queries=2) if name == "find, one call per query" else warm
            measure(marlin, name, clips if name == "engine, batch 8" else clips[:2], find_video, settings)
        print(f"warm-up {time.perf_counter() - started:.1f} s; {len(clips)} clips of {shape['seconds']:g} s "
              f"({', '.join(shape['sizes'])}), {shape['new_tokens']} new tokens; find: {shape['queries']} "
              f"queries on {shape['find_seconds']:g} s", flush=True)
        rows: dict[str, dict] = {}
        for index, name in enumerate(QUICK_RUNS):
            rows[name] = measure(marlin, name, clips, find_video, shape)
            print_row(name, rows[name], rows, header=index == 0)
        first = rows["reference"]
        name = torch.cuda.get_device_name() if first["device"].startswith("cuda") else "CPU"
        print(f"device {first['device']} ({name}), torch {first['torch']}, "
              f"kernels {marlin.kernels()}")
        one, eight, ref = rows["engine, one at a time"], rows["engine, batch 8"], rows["reference"]
        print(f"decode ms/step: reference batch 1 {ref['ms_per_step']:.1f}, reference batch 8 "
              f"{rows['reference, batch 8']['ms_per_step']:.1f}; engine batch 1 {one['ms_per_step']:.1f}, "
              f"batch 8 {eight['ms_per_step']:.1f} (batch 8 / batch 1 = "
              f"{eight['ms_per_step'] / max(1e-9, one['ms_per_step']):.2f}x)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny width, short clips: runs on a CPU")
    parser.add_argument("--quick", action="store_true", help="CUDA, one process, <= 8 minutes on a fresh GPU "
                        "(with --small: the same flow on the CPU, to check the script)")
    parser.add_argument("--clips", type=Path, help="--quick: folder with clip*.mp4 and find.mp4 made beforehand")
    parser.add_argument("--make-clips", type=Path, help="make --quick's clips in this folder and stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--paths", nargs="+", default=None, help="run only these paths (names as in the table)")
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_child(spec["name"], spec["model_dir"], spec["clips"], spec["find_video"],
                                   spec["settings"])))
        return 0
    if args.make_clips:
        args.make_clips.mkdir(parents=True, exist_ok=True)
        print(make_clips(args.make_clips, QUICK))
        return 0
    if args.quick:
        return run_quick(args.clips, args.small)
    shape = SMALL if args.small else FULL
    names = [n for n in (*CAPTION_RUNS, *FIND_RUNS) if args.paths is None or n in args.paths or
             n in ("reference", "find, one call per query")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_checkpoint(root / "model", args.small)
        clips, find_video = make_clips(root, shape)
        print(f"{len(clips)} clips of {shape['seconds']:g} s ({', '.join(shape['sizes'])}), {shape['new_tokens']} new "
              f"tokens; find: {shape['queries']} queries on {shape['find_seconds']:g} s", flush=True)
        rows = {}
        for name in names:
            rows[name] = run_path(name, args, model_dir, clips, find_video, shape)
            print(f"  {name}: {rows[name]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
