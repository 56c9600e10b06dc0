"""Run by bench/serving_fidelity.py with the vLLM venv's Python: what vLLM's own multimodal processor makes
of a request's video, without starting a server.

The same code the server runs per request (``VideoMediaIO`` loading, then the Qwen3-VL multimodal
processor of vLLM 0.32 with its transformers), so the grid, the pixels, the timestamps and the prompt
token ids it returns are what the served model sees.

Usage: ``.cache/vllm-venv/bin/python bench/vllm_side.py SPEC.json OUT_DIR``; SPEC holds ``model_dir``
and ``items`` (``name``, ``prompt``, ``data_url`` or ``path``, ``media_io_kwargs``, ``mm_processor_kwargs``).
Writes ``OUT_DIR/<name>.npz`` (grid, pixels uint8, timestamps, prompt_ids).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(spec_path: str, out_dir: str) -> int:
    import numpy as np
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.media.image import ImageMediaIO
    from vllm.multimodal.media.video import VideoMediaIO
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs

    spec = json.loads(Path(spec_path).read_text())
    processor = MULTIMODAL_REGISTRY.create_processor(ModelConfig(model=spec["model_dir"]))
    tokenizer = processor.info.get_tokenizer()
    for item in spec["items"]:
        media_io = VideoMediaIO(ImageMediaIO(image_mode="RGB"), **item["media_io_kwargs"].get("video", {}))
        if "data_url" in item:
            media_type, _, data = item["data_url"][len("data:"):].partition(";base64,")
            frames, metadata = media_io.load_base64(media_type, data).media
        else:
            frames, metadata = media_io.load_file(Path(item["path"])).media
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": item["prompt"]}]}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = ProcessorInputs(
            prompt=tokenizer.encode(text, add_special_tokens=False),
            mm_data_items=processor.info.parse_mm_data({"video": [(frames, metadata)]}),
            hf_processor_mm_kwargs=item.get("mm_processor_kwargs", {}),
        )
        out = processor.apply(inputs, TimingContext(enabled=False))
        (video,) = out["mm_kwargs"]["video"]
        np.savez(
            Path(out_dir) / f"{item['name']}.npz",
            grid=np.asarray(video["video_grid_thw"].data),
            pixels=np.asarray(video["pixel_values_videos"].data),
            timestamps=np.asarray(video["timestamps"].data, dtype=np.float64),
            prompt_ids=np.asarray(out["prompt_token_ids"]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
