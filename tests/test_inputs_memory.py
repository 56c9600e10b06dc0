"""Peak memory of ``prepare_inputs`` above the decoded frames: at most 1.2x the model-input tensor, at any length.

A fresh process decodes a clip (the uint8 frames stay resident), then builds the model inputs three ways: the
processor's own path (``processor_inputs``, float32), ``prepare_inputs`` in float32 and in bfloat16. The peak
resident memory above the level with the frames loaded is read from the kernel (``VmHWM`` after resetting it
through ``/proc/self/clear_refs``; torch's CPU allocations are invisible to tracemalloc) and divided by the
size of the ``pixel_values_videos`` the call returned (which it still holds, so the ratio is at least ~1).
glibc maps every block over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``, as tests/test_memory.py) so a freed
block leaves the resident set at once. The control: the processor's path holds ~3x (stacked frames, float32
frames, the patchified copy, the concatenation), which this measurement must see. Two 480p clips, 4 s and
11 s (the recorded grid [11, 30, 54]), show the ratio does not grow with length; ``bench/preprocess.py``
measures 120 s 1080p windows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from media import make_clip

LIMIT = 1.2  # the peak above the frames, in model-input tensors
MODES = ("processor", "float32", "bfloat16")

CHILD = r"""
import json, re, sys
sys.path.insert(0, "tests")
import torch
import tiny_model
from marlin_core.engine.inputs import prepare_inputs, processor_inputs
from marlin_core.video import load_video

processor = tiny_model.build_processor()
PROMPT = tiny_model.CAPTION_PROMPT
RUNS = {
    "processor": lambda sampled: processor_inputs(processor, sampled, PROMPT),
    "float32": lambda sampled: prepare_inputs(processor, sampled, PROMPT),
    "bfloat16": lambda sampled: prepare_inputs(processor, sampled, PROMPT, dtype=torch.bfloat16),
}

def kib(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1))

def ratio(mode, sampled):
    before = kib("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    inputs = RUNS[mode](sampled)
    return (kib("VmHWM") - before) * 1024 / inputs["pixel_values_videos"].nbytes

warm = load_video(sys.argv[1])
for mode in RUNS:  # lazily allocated buffers (tokenizer, thread pools) are not what is measured
    RUNS[mode](warm)
del warm
results = {}
for path in sys.argv[1:]:
    sampled = load_video(path)
    results[path] = {mode: ratio(mode, sampled) for mode in RUNS}
    del sampled
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def ratios(tmp_path_factory) -> dict[str, dict[str, float]]:
    """``{"short"|"long": {mode: peak above the frames / pixel_values_videos bytes}}``, one fresh process."""
    root = tmp_path_factory.mktemp("memory-clips")
    paths = {name: str(make_clip(root / f"480p_{seconds:g}s.mp4", "854x480", 25, seconds))
             for name, seconds in (("short", 4.0), ("long", 11.0))}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    out = subprocess.run([sys.executable, "-c", CHILD, *paths.values()], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    return {name: measured[path] for name, path in paths.items()}


def test_the_measurement_sees_the_processors_copies(ratios):
    for clip in ratios.values():
        assert clip["processor"] > 2.5, ratios


@pytest.mark.parametrize("mode", ["float32", "bfloat16"])
def test_peak_above_the_frames_is_at_most_1_2x_the_model_input(ratios, mode):
    for clip in ratios.values():
        assert 0.9 < clip[mode] <= LIMIT, ratios


@pytest.mark.parametrize("mode", ["float32", "bfloat16"])
def test_the_ratio_does_not_grow_with_video_length(ratios, mode):
    assert ratios["long"][mode] - ratios["short"][mode] < 0.1, ratios
