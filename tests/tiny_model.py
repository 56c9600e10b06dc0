"""A tiny Qwen3.5 video checkpoint, built offline, that the test suite runs on instead of Marlin-2B.

Why: the real model is a 4 GB gated download that needs a GPU. The tests still have to exercise the real code
path (``AutoModelForImageTextToText`` + ``AutoProcessor`` from a saved directory, real ``generate``), so this
module builds a checkpoint of the same architecture (``Qwen3_5ForConditionalGeneration`` with both gated-delta-net
and full-attention layers, ``Qwen3VLProcessor`` with patch 16 / temporal patch 2 / merge 2, a byte-level BPE
tokenizer carrying the Qwen special tokens and a chat template of Qwen3.5's structure), only a few hundred
thousand parameters big.

Two flavours:
- ``build_tiny_checkpoint`` / ``build_random_checkpoint``: random weights, built in seconds; output is garbage,
  which is what "garbage never raises" tests want.
- ``train_tiny_checkpoint``: the same model fitted on CPU (seeded, deterministic) so that greedy ``generate``
  reproduces ``TRAINED_TARGETS`` exactly: a Marlin-format caption and a find answer that differ between a red
  and a blue clip. Training inputs come from ``reference_inputs``, the inference path the real outputs were
  recorded with, so the model learns exactly what inference feeds it.

Also runnable: ``python tests/tiny_model.py OUT_DIR [--trained]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # marlin_core, also when run as a script

from marlin_core.contract import CAPTION_PROMPT, FIND_PROMPT_TEMPLATE, format_caption, format_find  # noqa: E402

logger = logging.getLogger(__name__)

# What the trained checkpoint answers, per training clip (the text after the generation prompt, before eos),
# written in Marlin's exact trained format so ``format_ok`` holds for it.
TRAINED_TARGETS: dict[str, dict] = {
    "red": {
        "caption": format_caption("A red screen.", [
            {"start": 0.0, "end": 1.5, "description": "Red light."},
            {"start": 1.5, "end": 3.0, "description": "Red fades."},
        ]),
        "find": {"query": "red light", "answer": format_find(1.0, 2.0)},
    },
    "blue": {
        "caption": format_caption("A blue screen.", [
            {"start": 0.0, "end": 2.0, "description": "Blue sky."},
            {"start": 2.0, "end": 3.0, "description": "Blue dims."},
        ]),
        "find": {"query": "blue sky", "answer": format_find(0.5, 2.5)},
    },
}

# The training clips: short and tiny so decoding and training stay fast (qwen-vl-utils upscales every frame to
# its 128-token floor anyway: 384x384, 3 temporal patches of 144 merged tokens for 3 s at 2 fps).
VIDEO_SIZE_PX = 96
VIDEO_FPS = 10
VIDEO_SECONDS = 3.0

# Vision geometry of Qwen3.5 / Marlin-2B; the processor and the vision tower must agree on it.
PATCH_SIZE = 16
TEMPORAL_PATCH_SIZE = 2
MERGE_SIZE = 2

# Qwen3.5 special tokens (same strings, same roles). <think>/</think> are plain added tokens as in Qwen3.x, so
# skip_special_tokens=True keeps them; the rest are special.
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [
    PAD_TOKEN,
    "<|im_start|>",
    EOS_TOKEN,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
THINK_TOKENS = ["<think>", "</think>"]

# Small enough that embeddings stay ~30k parameters; big enough that prompts and targets are a few dozen tokens.
BPE_VOCAB_SIZE = 480

# How every rendered generation prompt ends (thinking off, the default): the model's answer comes right after it.
GENERATION_PROMPT_END = "<|im_start|>assistant\n<think>\n\n</think>\n\n"

# Qwen3.5's chat template structure (render_content macro with vision placeholders, optional system turn,
# reasoning_content handling for assistant turns), without the tool-calling branches. The generation prompt
# follows the Qwen3.5 small models (0.8B-9B, Marlin-2B's base), which do not think by default: it ends with an
# empty, closed think block unless enable_thinking=True, so the model answers directly. This matches the recorded
# Marlin outputs (no <think> among the generated tokens).
CHAT_TEMPLATE = """{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- macro render_content(content, do_vision_count, is_system_content=false) %}
    {%- if content is string %}
        {{- content }}
    {%- elif content is iterable and content is not mapping %}
        {%- for item in content %}
            {%- if 'image' in item or 'image_url' in item or item.type == 'image' %}
                {%- if is_system_content %}
                    {{- raise_exception('System message cannot contain images.') }}
                {%- endif %}
                {%- if do_vision_count %}
                    {%- set image_count.value = image_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}
                    {{- 'Picture ' ~ image_count.value ~ ': ' }}
                {%- endif %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif 'video' in item or item.type == 'video' %}
                {%- if is_system_content %}
                    {{- raise_exception('System message cannot contain videos.') }}
                {%- endif %}
                {%- if do_vision_count %}
                    {%- set video_count.value = video_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}
                    {{- 'Video ' ~ video_count.value ~ ': ' }}
                {%- endif %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- else %}
                {{- raise_exception('Unexpected item type in content.') }}
            {%- endif %}
        {%- endfor %}
    {%- elif content is none or content is undefined %}
        {{- '' }}
    {%- else %}
        {{- raise_exception('Unexpected content type.') }}
    {%- endif %}
{%- endmacro %}
{%- if not messages %}
    {{- raise_exception('No messages provided.') }}
{%- endif %}
{%- if messages[0].role == 'system' %}
    {%- set content = render_content(messages[0].content, false, true)|trim %}
    {{- '<|im_start|>system\\n' + content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- if message.role == "user" %}
        {%- set ns.last_query_index = (messages|length - 1) - loop.index0 %}
        {%- break %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = render_content(message.content, true)|trim %}
    {%- if message.role == "system" %}
        {%- if not loop.first %}
            {{- raise_exception('System message must be at the beginning.') }}
        {%- endif %}
    {%- elif message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- set reasoning_content = reasoning_content|trim %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content + '\\n</think>\\n\\n' + content }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- else %}
        {{- raise_exception('Unexpected message role.') }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is true %}
        {{- '<think>\\n' }}
    {%- else %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""

# Text model: 3 gated-delta-net layers then 1 full-attention layer, Qwen3.5's 3:1 pattern in miniature.
TEXT_LAYER_TYPES = ["linear_attention", "linear_attention", "linear_attention", "full_attention"]
TEXT_HIDDEN = 64
VISION_HIDDEN = 32

# Gated-delta-net head geometry per variant. "default" is the smallest that transformers runs; "vllm" meets the
# limits of vLLM's CPU kernels (head dims must be 128: 16 and 32 are refused), with one head each so the model
# stays small. Full attention (head_dim 64, rotary half 8 = sum of mrope_section) already meets vLLM's limits.
LINEAR_HEADS = {
    "default": dict(linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4),
    "vllm": dict(linear_key_head_dim=128, linear_value_head_dim=128, linear_num_key_heads=1, linear_num_value_heads=1),
}

# Training: fixed seed, fixed step budget; stop once every target token beats the runner-up by LOGIT_MARGIN, so
# greedy decoding is robust to float noise across machines (about 70 steps are needed).
TRAIN_MAX_STEPS = 400
TRAIN_LEARNING_RATE = 3e-3
TRAIN_CHECK_EVERY = 10
LOGIT_MARGIN = 4.0
RECIPE_FILE = "tiny_model_recipe.json"
# Longest target is ~40 tokens; a cap keeps a wrongly trained model from generating for long.
GENERATE_MAX_NEW_TOKENS = 64


def _tokenizer_corpus() -> list[str]:
    """Texts the tiny BPE is trained on: every string the tests send or expect, plus the timestamp markup."""
    texts = [CAPTION_PROMPT, CHAT_TEMPLATE, "<|im_start|>user\n", "<|im_start|>assistant\n<think>\n\n</think>\n\n"]
    for targets in TRAINED_TARGETS.values():
        texts += [targets["caption"], targets["find"]["answer"], FIND_PROMPT_TEMPLATE.format(**targets["find"])]
    texts += [f"<{tenths / 10:.1f} seconds>" for tenths in range(0, 200, 5)]
    texts += [f"From {a}.{b} to {a + 1}.{b}." for a in range(10) for b in range(10)]
    texts += ["Scene: A person walks a dog in a park.\nEvents:\n<0.0 - 2.5> a person walks\n"]
    return texts


def build_tokenizer():
    """Train the small byte-level BPE (Qwen3.5 pre-tokenizer) and wrap it as a ``Qwen3_5Tokenizer``.

    Returns:
        A ``Qwen3_5Tokenizer`` with the Qwen special tokens, eos ``<|im_end|>`` and pad ``<|endoftext|>``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen3_5Tokenizer
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    # eos starts as the pad token so that the added tokens get Qwen's relative order (<|endoftext|> first).
    tokenizer = Qwen3_5Tokenizer(
        vocab=model_json["vocab"], merges=merges, eos_token=PAD_TOKEN, pad_token=PAD_TOKEN, unk_token=None
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor():
    """Assemble the ``Qwen3VLProcessor`` (tokenizer + image and video processors, Qwen3.5 geometry).

    Returns:
        A ``Qwen3VLProcessor`` carrying the chat template.
    """
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    geometry = dict(patch_size=PATCH_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE, merge_size=MERGE_SIZE)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**geometry),
        tokenizer=build_tokenizer(),
        video_processor=Qwen3VLVideoProcessor(**geometry),
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer, shape: str = "default"):
    """The ``Qwen3_5Config``: hybrid text stack (gated delta net + full attention) and a one-block vision tower.

    Args:
        tokenizer: the tokenizer whose ids the config must name (vocab size, vision and eos/pad ids).
        shape: a LINEAR_HEADS key ("vllm": head dims vLLM's CPU kernels accept).

    Returns:
        A ``Qwen3_5Config``.
    """
    from transformers import Qwen3_5Config

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=len(TEXT_LAYER_TYPES),
        layer_types=TEXT_LAYER_TYPES,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        linear_conv_kernel_dim=4,
        **LINEAR_HEADS[shape],
        max_position_embeddings=262144,  # as Qwen3.5; RoPE is computed on the fly, so no cost
        # Qwen3.5's rope layout: partial rotary 0.25 of head_dim 64 = 16 dims, interleaved M-RoPE over (t, h, w).
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
        tie_word_embeddings=True,
    )
    vision_config = dict(
        depth=1,
        hidden_size=VISION_HIDDEN,
        intermediate_size=2 * VISION_HIDDEN,
        num_heads=2,
        in_channels=3,
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        out_hidden_size=TEXT_HIDDEN,
        num_position_embeddings=64,
    )
    return Qwen3_5Config(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _new_model_and_processor(seed: int, shape: str = "default"):
    from transformers import GenerationConfig, Qwen3_5ForConditionalGeneration

    processor = build_processor()
    config = build_config(processor.tokenizer, shape)
    torch.manual_seed(seed)
    model = Qwen3_5ForConditionalGeneration(config).float()
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    return model, processor


def _save(model, processor, out_dir: Path, recipe: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return out_dir


def build_tiny_checkpoint(out_dir: str | Path, *, seed: int = 0, shape: str = "default") -> Path:
    """Build the tiny model with random weights and save model + processor to ``out_dir``.

    Args:
        out_dir: directory to write (created if missing); loadable with ``AutoModelForImageTextToText`` and
            ``AutoProcessor``.
        seed: torch seed for the weight init.
        shape: a LINEAR_HEADS key.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    model, processor = _new_model_and_processor(seed, shape)
    return _save(model, processor, Path(out_dir), {"kind": "random", "seed": seed, "shape": shape})


def build_random_checkpoint(out_dir: str | Path, seed: int = 0) -> Path:
    """Untrained checkpoint whose generations are garbage (for "bad output never raises" tests).

    Args:
        out_dir: directory to write.
        seed: torch seed for the weight init.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    return build_tiny_checkpoint(out_dir, seed=seed)


def make_color_video(
    path: str | Path,
    color: str,
    *,
    size: int = VIDEO_SIZE_PX,
    fps: int = VIDEO_FPS,
    seconds: float = VIDEO_SECONDS,
) -> Path:
    """Write a solid-colour H.264 clip with ffmpeg (lavfi ``color`` source, yuv420p).

    Args:
        path: output .mp4 path (parent created if missing, overwritten if present).
        color: any ffmpeg colour name or hex (``red``, ``blue``, ``0x336699``).
        size: width and height in pixels.
        fps: frames per second.
        seconds: duration in seconds.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("ffmpeg") is None:
        raise RuntimeError(f"make_color_video: ffmpeg not found on PATH (needed to write {path}); install ffmpeg")
    cmd = [
        "ffmpeg", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"color=c={color}:s={size}x{size}:r={fps}:d={seconds}",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"make_color_video: ffmpeg failed writing {path}: {done.stderr.strip()}")
    return path


def make_training_videos(video_dir: str | Path) -> dict[str, Path]:
    """Write the clips ``train_tiny_checkpoint`` is fitted on: ``<video_dir>/<colour>.mp4`` per TRAINED_TARGETS key.

    Args:
        video_dir: directory to write into.

    Returns:
        Mapping colour name -> clip path.
    """
    return {color: make_color_video(Path(video_dir) / f"{color}.mp4", color) for color in TRAINED_TARGETS}


def chat_messages(video_path: str | Path, prompt: str) -> list[dict]:
    """The one-turn conversation Marlin is prompted with: the video, then the prompt text."""
    content = [{"type": "video", "video": str(video_path)}, {"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def reference_inputs(processor, video_path: str | Path, prompt: str):
    """Model inputs built exactly the way the recorded Marlin outputs were (qwen-vl-utils, then the processor).

    Args:
        processor: a ``Qwen3VLProcessor``.
        video_path: the clip.
        prompt: the user text after the video (CAPTION_PROMPT or a formatted FIND_PROMPT_TEMPLATE).

    Returns:
        The processor's ``BatchFeature`` (input_ids, attention_mask, mm_token_type_ids, pixel_values_videos,
        video_grid_thw), batch size 1, torch tensors.
    """
    return reference_processor(processor, reference_load(video_path, prompt))


def reference_load(video_path: str | Path, prompt: str) -> tuple[list[dict], list, dict]:
    """The reference's first step, qwen-vl-utils ``process_vision_info``: ``(messages, videos, video_kwargs)``."""
    from qwen_vl_utils import process_vision_info

    messages = chat_messages(video_path, prompt)
    _, videos, video_kwargs = process_vision_info(
        messages, return_video_kwargs=True, return_video_metadata=True, image_patch_size=PATCH_SIZE
    )
    return messages, videos, video_kwargs


def reference_processor(processor, loaded: tuple[list[dict], list, dict]):
    """The reference's second step: the processor on what :func:`reference_load` returned, without resizing."""
    messages, videos, video_kwargs = loaded
    chat_text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    frames, metadata = zip(*videos)
    return processor(
        text=[chat_text],
        videos=list(frames),
        video_metadata=list(metadata),
        do_resize=False,
        return_tensors="pt",
        **video_kwargs,
    )


def training_examples(videos: Mapping[str, Path]) -> list[tuple[str, str, str]]:
    """(colour, prompt, target) triples the trained checkpoint must reproduce, for the given clips."""
    examples = []
    for color in videos:
        targets = TRAINED_TARGETS[color]
        examples.append((color, CAPTION_PROMPT, targets["caption"]))
        examples.append((color, FIND_PROMPT_TEMPLATE.format(query=targets["find"]["query"]), targets["find"]["answer"]))
    return examples


def _teacher_forced_example(processor, video_path: Path, prompt: str, target: str) -> dict:
    """Reference inputs with the target (+ eos) appended and labels on the target tokens only (batch size 1)."""
    inputs = dict(reference_inputs(processor, video_path, prompt))
    target_ids = processor.tokenizer(target + EOS_TOKEN, add_special_tokens=False, return_tensors="pt").input_ids
    labels = torch.cat([torch.full_like(inputs["input_ids"], -100), target_ids], dim=1)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], target_ids], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    mm_types = inputs["mm_token_type_ids"]
    inputs["mm_token_type_ids"] = torch.cat([mm_types, torch.zeros_like(target_ids, dtype=mm_types.dtype)], dim=1)
    inputs["labels"] = labels
    return inputs


def _collate(examples: list[dict], pad_id: int) -> dict:
    """Right-pad examples into one batch. Padding sits after every real token, so causal layers (full and
    linear attention alike) compute the real positions exactly as unpadded; pads carry label -100."""
    width = max(ex["input_ids"].shape[1] for ex in examples)
    fill = {"input_ids": pad_id, "attention_mask": 0, "mm_token_type_ids": 0, "labels": -100}
    batch = {
        key: torch.cat(
            [torch.nn.functional.pad(ex[key], (0, width - ex[key].shape[1]), value=value) for ex in examples]
        )
        for key, value in fill.items()
    }
    batch["pixel_values_videos"] = torch.cat([ex["pixel_values_videos"] for ex in examples])
    batch["video_grid_thw"] = torch.cat([ex["video_grid_thw"] for ex in examples])
    return batch


def _min_margin(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Smallest (target logit - best other logit) over the supervised positions; > 0 means greedy reproduces."""
    shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
    keep = shift_labels != -100
    picked = shift_logits[keep]
    gold = shift_labels[keep]
    gold_logit = picked.gather(1, gold[:, None])[:, 0]
    others = picked.scatter(1, gold[:, None], float("-inf"))
    return float((gold_logit - others.max(dim=1).values).min())


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _recipe(seed: int, videos: Mapping[str, Path], shape: str) -> dict:
    """What a trained checkpoint depends on: this file's code, the shape, the seed and the clips' bytes."""
    return {
        "kind": "trained",
        "shape": shape,
        "seed": seed,
        "builder_sha256": _sha256(Path(__file__)),
        "videos_sha256": {color: _sha256(path) for color, path in sorted(videos.items())},
    }


def _already_built(out_dir: Path, recipe: dict) -> bool:
    """True when ``out_dir`` holds a complete checkpoint saved with ``recipe`` (the step count aside)."""
    recipe_path = out_dir / RECIPE_FILE
    if not (recipe_path.is_file() and (out_dir / "model.safetensors").is_file()):
        return False
    saved = json.loads(recipe_path.read_text())
    saved.pop("steps", None)
    return saved == recipe


def _fit(model, batch: dict) -> int:
    """AdamW on the batch until every target token wins by LOGIT_MARGIN; returns the number of steps taken."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LEARNING_RATE, weight_decay=0.0)
    model.train()
    margin = float("-inf")
    for step in range(1, TRAIN_MAX_STEPS + 1):
        optimizer.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        margin = _min_margin(out.logits.detach(), batch["labels"])
        logger.debug("tiny model step %d: loss %.4f, smallest logit margin %.2f", step, out.loss.item(), margin)
        if step % TRAIN_CHECK_EVERY == 0 and margin > LOGIT_MARGIN:
            model.eval()
            return step
    raise RuntimeError(
        f"train_tiny_checkpoint: targets not learned after {TRAIN_MAX_STEPS} steps (smallest logit margin "
        f"{margin:.2f} < {LOGIT_MARGIN}); raise TRAIN_MAX_STEPS or TRAIN_LEARNING_RATE in {__file__}"
    )


def _check_generations(model, processor, videos: Mapping[str, Path]) -> None:
    """Greedy ``generate`` must give every target followed by eos, else the checkpoint is useless to the tests."""
    for color, prompt, target in training_examples(videos):
        inputs = reference_inputs(processor, videos[color], prompt)
        new_tokens = model.generate(**inputs, max_new_tokens=GENERATE_MAX_NEW_TOKENS)[0, inputs["input_ids"].shape[1] :]
        text = processor.tokenizer.decode(new_tokens, skip_special_tokens=False)
        if text != target + EOS_TOKEN:
            raise RuntimeError(
                f"train_tiny_checkpoint: {color} clip, prompt {prompt[:40]!r}...: generated {text!r}, "
                f"expected {target + EOS_TOKEN!r}"
            )


def train_tiny_checkpoint(
    out_dir: str | Path, videos: Mapping[str, Path], *, seed: int = 0, shape: str = "default"
) -> Path:
    """Fit the tiny model on CPU so greedy ``generate`` reproduces TRAINED_TARGETS for ``videos``, then save it.

    Teacher-forced cross-entropy on the assistant tokens only (the target then ``<|im_end|>``), inputs from
    ``reference_inputs``, AdamW, fixed seed, deterministic algorithms, one CPU thread (identical results on any
    core count, and no thread oversubscription when tests run side by side). Stops once every target token wins
    by LOGIT_MARGIN (checked every TRAIN_CHECK_EVERY steps; about 70 steps, ~25 s on one core), then checks the
    targets with real ``generate``. A directory already holding a checkpoint with the same recipe (this file, seed,
    clip bytes) is reused as is.

    Args:
        out_dir: directory to write.
        videos: colour name (a TRAINED_TARGETS key) -> clip path, e.g. from ``make_training_videos``.
        seed: torch seed for init and training.
        shape: a LINEAR_HEADS key; "vllm" builds the variant vLLM's CPU kernels can serve.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        KeyError: a colour without targets.
        RuntimeError: the targets were not learned within TRAIN_MAX_STEPS steps.
    """
    out_dir = Path(out_dir)
    videos = {color: Path(path) for color, path in videos.items()}
    unknown = sorted(set(videos) - set(TRAINED_TARGETS))
    if unknown:
        raise KeyError(f"train_tiny_checkpoint: no targets for {unknown}; known colours: {sorted(TRAINED_TARGETS)}")
    recipe = _recipe(seed, videos, shape)
    if _already_built(out_dir, recipe):
        return out_dir

    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        model, processor = _new_model_and_processor(seed, shape)
        examples = [
            _teacher_forced_example(processor, videos[color], prompt, target)
            for color, prompt, target in training_examples(videos)
        ]
        recipe["steps"] = _fit(model, _collate(examples, pad_id=processor.tokenizer.pad_token_id))
        _check_generations(model, processor, videos)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
    return _save(model, processor, out_dir, recipe)


def count_parameters(model) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    """CLI: build (or train) the tiny checkpoint into OUT_DIR and print where it went and how long it took."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the checkpoint to")
    parser.add_argument("--trained", action="store_true", help="fit it to TRAINED_TARGETS (clips in OUT_DIR/videos)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for init and training")
    parser.add_argument("--shape", choices=sorted(LINEAR_HEADS), default="default",
                        help="'vllm': the variant vLLM's CPU kernels can serve")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.trained:
        videos = make_training_videos(args.out_dir / "videos")
        path = train_tiny_checkpoint(args.out_dir, videos, seed=args.seed, shape=args.shape)
    else:
        path = build_tiny_checkpoint(args.out_dir, seed=args.seed, shape=args.shape)
    print(f"tiny checkpoint written to {path} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
