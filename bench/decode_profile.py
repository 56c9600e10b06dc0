"""What one decode step costs, by part of the model: ``model.generate`` against the engine's decode loop.

Profiles ``--steps`` decode steps (after the prompt's prefill, which is left out) with ``torch.profiler`` and
attributes every operator to the part of the step it runs in, through module hooks that open profiler ranges:

- ``gated delta net`` / ``full attention`` / ``MLP`` / ``norms``: inside those modules of every decoder layer;
- ``embedding + rotary``, ``lm head``: the step's first and last modules;
- ``model glue``: inside the model's ``forward`` but outside those modules (mask construction, position ids,
  output wrappers);
- ``loop``: outside the model (token choice, logits processors, the log-prob recorder, stopping criteria,
  growing ``input_ids`` / attention mask / position ids, cache bookkeeping).

Per step and per part it prints operators (``aten::`` calls, i.e. dispatches from Python), self CPU ms, and on
CUDA kernel launches and host synchronisations (``cudaStreamSynchronize`` / ``cudaDeviceSynchronize`` /
``cudaEventSynchronize`` and ``aten::_local_scalar_dense``, the ``.item()`` of a device tensor). It then times
the same steps without the profiler (``ms/step``) for batch 1 and batch ``--batch``, in the same run:
``generate`` (plain), ``generate + recorder`` (the engine's ``decode="generate"``: plain ``generate`` plus the
per-token log-prob recorder), the engine's ``loop``, and the ``floor`` (the language-model head, the argmax and the
chosen token's log-prob alone: what any exact step costs at least), and prints the ratios.

Run: ``python bench/decode_profile.py`` (the tests' tiny random checkpoint, CPU, one thread: a minute);
``--small`` (bench/gpu.py's small shape: the full 248,320-token vocabulary on a tiny width);
``--model DIR`` (any Qwen3.5 checkpoint, e.g. on CUDA).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

PARTS = ("gated delta net", "full attention", "MLP", "norms", "embedding + rotary", "lm head", "model glue", "loop")
SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense")
LAUNCH_NAMES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch", "cuLaunchKernelEx")


def label_modules(model) -> list:
    """Open a profiler range around each profiled part of the model (forward pre/post hooks); return the handles."""
    from marlin_core.engine.decode import language_parts

    lm, head = language_parts(model)
    named = [(model, "model glue"), (lm.embed_tokens, "embedding + rotary"), (lm.rotary_emb, "embedding + rotary"),
             (head, "lm head"), (lm.norm, "norms")]
    for layer in lm.layers:
        mixer = getattr(layer, "linear_attn", None)
        named += [(mixer, "gated delta net") if mixer is not None else (layer.self_attn, "full attention"),
                  (layer.mlp, "MLP"), (layer.input_layernorm, "norms"), (layer.post_attention_layernorm, "norms")]
    handles, open_ranges = [], {}

    def before(module, args, kwargs, name=None):
        ids = kwargs.get("input_ids", args[0] if args else None)
        tag = name
        if module is model and ids is not None and ids.dim() == 2 and ids.shape[1] > 1:
            tag = "prefill"
        scope = torch.profiler.record_function(f"part: {tag}")
        scope.__enter__()
        open_ranges.setdefault(id(module), []).append(scope)

    def after(module, args, kwargs, output):
        open_ranges[id(module)].pop().__exit__(None, None, None)

    for module, name in named:
        handles.append(module.register_forward_pre_hook(lambda m, a, k, n=name: before(m, a, k, n), with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    return handles


def attribute(events) -> tuple[dict, int]:
    """Per part: Counter of ops, launches, syncs and self CPU µs; and the number of decode steps seen."""
    totals: dict[str, Counter] = defaultdict(Counter)
    prefill_end = max((e.time_range.end for e in events if e.name == "part: prefill"), default=0)
    steps = sum(1 for e in events if e.name == "part: lm head" and e.time_range.start >= prefill_end)
    for event in events:
        if event.time_range.start < prefill_end or event.name.startswith("part: ") or event.name.startswith("step"):
            continue
        part, parent = "loop", event.cpu_parent
        while parent is not None:
            if parent.name.startswith("part: "):
                part = parent.name[len("part: "):]
                break
            parent = parent.cpu_parent
        if part == "prefill":
            continue
        counter = totals[part]
        if event.name.startswith("aten::") and (event.cpu_parent is None or
                                                not event.cpu_parent.name.startswith("aten::")):
            counter["ops"] += 1
        if event.name in LAUNCH_NAMES:
            counter["launches"] += 1
        if event.name in SYNC_NAMES:
            counter["syncs"] += 1
        counter["self_us"] += event.self_cpu_time_total
    return totals, steps


def run_generate(marlin, inputs, steps: int) -> None:
    with torch.inference_mode():
        marlin.model.generate(**inputs, max_new_tokens=steps + 1, do_sample=False)


def run_recorded(marlin, inputs, steps: int) -> None:
    """The engine's ``decode="generate"`` path: ``generate`` with the log-prob recorder (what the loop replaces)."""
    from marlin_core.engine.generation import GenerationSettings

    marlin.generator._plain_generate(inputs, GenerationSettings(steps + 1), None)


def run_loop(marlin, inputs, steps: int) -> None:
    marlin.generator.decoder.generate(inputs, steps + 1)


def run_floor(marlin, inputs, steps: int) -> None:
    """What every exact step must do whatever the loop: the language-model head over the whole vocabulary, the
    argmax and the chosen token's log-softmax, on a hidden state of the batch's size (``steps`` times)."""
    from marlin_core.engine.decode import host_argmax

    argmax = host_argmax if marlin.device.type == "cpu" else (lambda logits: torch.argmax(logits, dim=-1))
    stepper = marlin.generator.decoder.stepper
    hidden = torch.randn((inputs["input_ids"].shape[0], 1, stepper.head.in_features), dtype=marlin.model.dtype,
                         device=marlin.device)
    with torch.inference_mode():
        for _ in range(steps):
            logits = stepper.head(hidden)[:, -1].float()
            chosen = argmax(logits)
            torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None])


def label_stepper(stepper) -> list[str]:
    """Open a profiler range around each part of the engine's step (it calls the model's weights directly, so
    module hooks do not see it, except on the head and on layers it runs through their modules); return the
    names of the instance attributes set."""
    parts = {"norm": "norms", "mlp": "MLP", "delta_net": "gated delta net", "attention": "full attention",
             "embed": "embedding + rotary", "rotary": "embedding + rotary", "request_rotary": "embedding + rotary",
             "step_rotary": "embedding + rotary", "logits": "model glue"}
    for name, part in parts.items():
        plain = getattr(stepper, name)

        def labelled(*args, _plain=plain, _part=part, **kwargs):
            with torch.profiler.record_function(f"part: {_part}"):
                return _plain(*args, **kwargs)

        setattr(stepper, name, labelled)
    return list(parts)


def profile(path, marlin, inputs, steps: int, cuda: bool) -> tuple[dict, int]:
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    handles = label_modules(marlin.model)
    stepper = marlin.generator.decoder.stepper
    labelled = label_stepper(stepper)
    try:
        with torch.profiler.profile(activities=activities) as prof:
            path(marlin, inputs, steps)
    finally:
        for name in labelled:
            delattr(stepper, name)
        for handle in handles:
            handle.remove()
    return attribute(prof.events())


def clock(cuda: bool) -> float:
    """Wall seconds on CUDA (after a sync); process CPU seconds on the CPU, so that other processes on a shared
    machine do not inflate the figure (one torch thread: CPU time is the step's time)."""
    if cuda:
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def timed(paths: dict, marlin, inputs, steps: int, cuda: bool, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per decode step of each path: (best time of prefill + ``steps`` steps) minus (best time of
    prefill + 1 step), over ``steps - 1``; the paths run interleaved, ``repeats`` times each (the best of each
    length is kept: on a shared machine the other processes only ever add time). End-of-answer tokens are
    switched off, so every run makes all its steps."""
    config, decoder = marlin.model.generation_config, marlin.generator.decoder
    saved = config.eos_token_id, decoder.eos_ids
    config.eos_token_id, decoder.eos_ids = None, []
    short = {name: float("inf") for name in paths}
    long = dict(short)
    try:
        for name, path in paths.items():
            path(marlin, inputs, steps)  # warm-up (kernel compilation, allocator)
        for _ in range(repeats):
            for name, path in paths.items():
                started = clock(cuda)
                path(marlin, inputs, 1)
                middle = clock(cuda)
                path(marlin, inputs, steps)
                ended = clock(cuda)
                short[name], long[name] = min(short[name], middle - started), min(long[name], ended - middle)
    finally:
        config.eos_token_id, decoder.eos_ids = saved
    return {name: 1000 * (long[name] - short[name]) / (steps - 1) for name in paths}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: build the tests' tiny random checkpoint)")
    parser.add_argument("--small", action="store_true", help="bench/gpu.py's small shape (full vocabulary)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the tests use 1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings per path (best is kept)")
    parser.add_argument("--no-profile", action="store_true", help="only the unprofiled ms/step and ratios")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from marlin_core import Marlin
    from marlin_core.contract import CAPTION_PROMPT
    from marlin_core.engine.inputs import collate_inputs
    from media import make_video

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            if args.small:
                import gpu
                model_dir = gpu.build_checkpoint(Path(tmp) / "model", small=True)
            else:
                import tiny_model
                model_dir = tiny_model.build_random_checkpoint(Path(tmp) / "model", seed=1)
        marlin = Marlin.from_pretrained(model_dir)
        clip = make_video(Path(tmp) / "clip.mp4", size="160x120", fps=10, seconds=3.0)
        one = marlin.prepare(clip, CAPTION_PROMPT)
        cuda = marlin.device.type == "cuda"
        print(f"device {marlin.device}, dtype {marlin.model.dtype}, torch threads {torch.get_num_threads()}, "
              f"prompt {one['input_ids'].shape[1]} tokens, kernels {marlin.kernels()}")
        for batch in (1, args.batch):
            inputs = collate_inputs([one] * batch, marlin.generator.tokenizer.pad_token_id)
            inputs = marlin.generator.cast_pixels(inputs.to(marlin.device))
            paths = {"generate": run_generate, "generate + recorder": run_recorded, "loop": run_loop,
                     "floor": run_floor}
            rates = timed(paths, marlin, inputs, args.steps, cuda, args.repeats)
            for name, path in paths.items():
                if args.no_profile or name not in ("generate", "loop"):
                    continue
                totals, steps = profile(path, marlin, inputs, args.steps, cuda)
                steps = max(1, steps)
                print(f"\nbatch {batch}, {name}: {rates[name]:.2f} ms/step unprofiled; per step under the profiler:")
                print(f"  {'part':20} {'ops':>6} {'CPU ms':>8}" + (f" {'launches':>9} {'syncs':>6}" if cuda else ""))
                for part in PARTS:
                    c = totals.get(part, Counter())
                    line = f"  {part:20} {c['ops'] / steps:6.1f} {c['self_us'] / steps / 1000:8.3f}"
                    if cuda:
                        line += f" {c['launches'] / steps:9.1f} {c['syncs'] / steps:6.2f}"
                    print(line)
                all_ops = sum(c["ops"] for c in totals.values()) / steps
                print(f"  {'total':20} {all_ops:6.1f} {sum(c['self_us'] for c in totals.values()) / steps / 1000:8.3f}"
                      + (f" {sum(c['launches'] for c in totals.values()) / steps:9.1f}"
                         f" {sum(c['syncs'] for c in totals.values()) / steps:6.2f}" if cuda else ""))
            print(f"\nbatch {batch}, ms/step: " + ", ".join(f"{name} {rate:.2f}" for name, rate in rates.items()))
            print(f"batch {batch}: loop / generate ms per step = {rates['loop'] / rates['generate']:.2f}; "
                  f"loop / (generate + recorder) = {rates['loop'] / rates['generate + recorder']:.2f}; "
                  f"floor (head, argmax, log-prob) / generate = {rates['floor'] / rates['generate']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
