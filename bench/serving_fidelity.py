"""Fidelity over HTTP: what the vLLM-served model sees, against the reference preprocessing, per clip and path.

The reference is what the recorded Marlin outputs were made with (qwen-vl-utils ``process_vision_info``
then the processor with ``do_resize=False``; marlin-facts.md). Each way a request can carry a video is
run through vLLM 0.32's own loading and Qwen3-VL processor (bench/vllm_side.py, in the vLLM venv):

* ``frames png`` -- what ``RemoteMarlin`` sends: the reference frames (sampled and resized here) as a
  PNG frame list, their timing in ``media_io_kwargs``, ``do_resize=False`` (marlin_core/chat_request.py);
* ``frames jpeg`` -- the same as JPEG (quality 95), ~10x smaller requests;
* ``video_url`` -- the file itself, vLLM's defaults (OpenCV, at most 32 frames, transformers' resize);
* ``video_url fps=2`` -- the file with ``--media-io-kwargs '{"video":{"num_frames":-1,"fps":2}}'``.

Printed per row: the video grid (t, h, w), whether the ``<t seconds>`` timestamps and the whole prompt's
token ids equal the reference's, and the pixel difference of the patches in 0-255 units (max / mean;
"-" when the grids differ). Run: ``python bench/serving_fidelity.py`` (needs scripts/install-vllm.sh).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import tiny_model  # noqa: E402
from media import make_clip  # noqa: E402
from vllm_server import VLLM_PYTHON  # noqa: E402

from marlin_core import chat_request  # noqa: E402
from marlin_core.contract import CAPTION_PROMPT  # noqa: E402
from marlin_core.video import load_video  # noqa: E402

BENCH = Path(__file__).resolve().parent
# (size, fps, seconds); the 480p clip is the recorded one's format (reference grid [11, 30, 54]).
CLIPS = {
    "red 96x96 10fps 3s": None,  # the tiny model's training clip
    "480p 854x480 25fps 11s": ("854x480", 25, 11.0),
    "1080p 1920x1080 30fps 4s": ("1920x1080", 30, 4.0),
    "portrait 720x1280 30fps 2s": ("720x1280", 30, 2.0),
}
TIMESTAMP_RE = re.compile(r"<(\d+\.\d) seconds>")


def request_items(name: str, clip: Path) -> list[dict]:
    """The ways a request can carry ``clip``, as bench/vllm_side.py items."""
    sampled = load_video(clip)
    items = []
    for frame_format in ("png", "jpeg"):
        part = chat_request.video_part(sampled, frame_format=frame_format)
        items.append({"path_label": f"frames {frame_format}", "data_url": part.content["video_url"]["url"],
                      "media_io_kwargs": part.media_io_kwargs, "mm_processor_kwargs": {"do_resize": False}})
    items.append({"path_label": "video_url", "path": str(clip), "media_io_kwargs": {}})
    items.append({"path_label": "video_url fps=2", "path": str(clip),
                  "media_io_kwargs": {"video": {"num_frames": -1, "fps": 2}}})
    for index, item in enumerate(items):
        item.update(name=f"{re.sub(r'[^a-z0-9]+', '_', name)}_{index}", clip=name, prompt=CAPTION_PROMPT)
    return items


def reference(processor, clip: Path) -> dict:
    inputs = tiny_model.reference_inputs(processor, clip, CAPTION_PROMPT)
    ids = inputs["input_ids"][0].tolist()
    text = processor.tokenizer.decode(ids)
    # The processor normalises x/255 to [-1, 1] (mean = std = 0.5); vLLM ships uint8 patches and normalises later.
    pixels = (inputs["pixel_values_videos"].double() * 0.5 + 0.5) * 255.0
    return {"grid": inputs["video_grid_thw"][0].tolist(), "ids": ids, "timestamps": TIMESTAMP_RE.findall(text),
            "pixels": pixels.numpy()}


def compare(ref: dict, got: dict) -> dict:
    grid = got["grid"].reshape(-1).tolist()
    same_grid = grid == ref["grid"]
    pixels = got["pixels"].astype(np.float64)
    if same_grid and pixels.shape == ref["pixels"].shape:
        diff = np.abs(pixels - ref["pixels"])
        pixel_text = f"{diff.max():.0f} / {diff.mean():.2f}"
    else:
        pixel_text = "-"
    stamps = [f"{t:.1f}" for t in got["timestamps"].tolist()]
    return {"grid": grid, "same_grid": same_grid, "timestamps": stamps == ref["timestamps"],
            "ids": got["prompt_ids"].tolist() == ref["ids"], "pixels": pixel_text,
            "frames": 2 * grid[0]}


def main() -> int:
    from transformers import AutoProcessor

    work = Path(tempfile.mkdtemp(prefix="serving-fidelity-"))
    model_dir = tiny_model.build_tiny_checkpoint(work / "model", shape="vllm")
    processor = AutoProcessor.from_pretrained(model_dir)
    clips = {}
    for name, spec in CLIPS.items():
        if spec is None:
            clips[name] = tiny_model.make_color_video(work / "red.mp4", "red")
        else:
            size, fps, seconds = spec
            clips[name] = make_clip(work / f"{size}.mp4", size, fps, seconds)
    items = [item for name, clip in clips.items() for item in request_items(name, clip)]
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps({"model_dir": str(model_dir), "items": items}))
    done = subprocess.run([str(VLLM_PYTHON), str(BENCH / "vllm_side.py"), str(spec_path), str(work)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-6000:], file=sys.stderr)
        return done.returncode
    references = {name: reference(processor, clip) for name, clip in clips.items()}
    print("| clip | path | grid (t,h,w) | reference grid | frames | timestamps = ref | prompt ids = ref | "
          "pixel diff max / mean (0-255) |")
    print("|---|---|---|---|---|---|---|---|")
    for item in items:
        ref = references[item["clip"]]
        row = compare(ref, dict(np.load(work / f"{item['name']}.npz")))
        print(f"| {item['clip']} | {item['path_label']} | {row['grid']} | {ref['grid']} | {row['frames']} | "
              f"{'yes' if row['timestamps'] else 'no'} | {'yes' if row['ids'] else 'no'} | {row['pixels']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
