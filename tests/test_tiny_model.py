"""The tiny Qwen3.5 checkpoint loads like the real model and, once trained, answers like Marlin on its two clips."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import tiny_model

@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """Two OpenMP threads on a shared 2-core box stall whenever a neighbour holds a core; one thread does not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clips(color_videos):
    return color_videos


@pytest.fixture(scope="module")
def random_dir(random_model_dir):
    return random_model_dir


@pytest.fixture(scope="module")
def trained_dir(trained_model_dir, tmp_path_factory):
    """A copy of the session's checkpoint (trained by ``train_tiny_checkpoint`` once per recipe, conftest):
    the reuse test below calls the trainer on it, which must never touch the shared one."""
    return Path(shutil.copytree(trained_model_dir, tmp_path_factory.mktemp("tiny-trained") / "trained"))


@pytest.fixture(scope="module")
def trained(trained_dir):
    return AutoModelForImageTextToText.from_pretrained(trained_dir), AutoProcessor.from_pretrained(trained_dir)


def _generate(model, processor, video, prompt):
    inputs = tiny_model.reference_inputs(processor, video, prompt)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=tiny_model.GENERATE_MAX_NEW_TOKENS)
    return out[0, inputs["input_ids"].shape[1] :]


def test_random_checkpoint_loads_through_the_auto_classes(random_dir):
    model = AutoModelForImageTextToText.from_pretrained(random_dir)
    processor = AutoProcessor.from_pretrained(random_dir)

    assert type(model).__name__ == "Qwen3_5ForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen3VLVideoProcessor"
    assert tiny_model.count_parameters(model) < 1_000_000
    assert set(model.config.text_config.layer_types) == {"linear_attention", "full_attention"}
    video_processor = processor.video_processor
    assert (video_processor.patch_size, video_processor.temporal_patch_size, video_processor.merge_size) == (16, 2, 2)
    assert model.config.vision_config.patch_size == 16


def test_special_tokens_and_generation_config_match_the_qwen_layout(random_dir):
    model = AutoModelForImageTextToText.from_pretrained(random_dir)
    tokenizer = AutoProcessor.from_pretrained(random_dir).tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny_model.SPECIAL_TOKENS + tiny_model.THINK_TOKENS}

    assert len(set(ids.values())) == len(ids)
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.vision_end_token_id == ids["<|vision_end|>"]
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert model.generation_config.eos_token_id == ids["<|im_end|>"]
    assert model.generation_config.pad_token_id == ids["<|endoftext|>"]
    # As in Qwen3.x, <think> is an added but not a special token: skip_special_tokens keeps it.
    assert tokenizer.decode([ids["<think>"], ids["<|im_end|>"]], skip_special_tokens=True) == "<think>"


def test_chat_template_has_the_qwen35_structure(random_dir, clips):
    processor = AutoProcessor.from_pretrained(random_dir)
    messages = tiny_model.chat_messages(clips["red"], tiny_model.CAPTION_PROMPT)

    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    thinking = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)

    expected_user = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>" + tiny_model.CAPTION_PROMPT
    assert text == expected_user + "<|im_end|>\n" + tiny_model.GENERATION_PROMPT_END
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")


def test_reference_inputs_follow_the_qwen_vl_utils_path(random_dir, clips):
    processor = AutoProcessor.from_pretrained(random_dir)

    inputs = tiny_model.reference_inputs(processor, clips["red"], tiny_model.CAPTION_PROMPT)

    # 3 s at 2 fps = 6 frames -> 3 temporal patches; qwen-vl-utils lifts 96x96 to its 128-token floor, 384x384.
    assert inputs["video_grid_thw"].tolist() == [[3, 24, 24]]
    assert tuple(inputs["pixel_values_videos"].shape) == (3 * 24 * 24, 3 * 2 * 16 * 16)
    video_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((inputs["input_ids"] == video_id).sum()) == 3 * 12 * 12
    prompt = processor.tokenizer.decode(inputs["input_ids"][0])
    # Frames 0, 6, 12, 17, 23, 29 of 30 at 10 fps; each temporal patch is stamped with its two frames' mean time.
    assert re.findall(r"<[0-9.]+ seconds>", prompt) == ["<0.3 seconds>", "<1.4 seconds>", "<2.6 seconds>"]
    assert prompt.endswith(tiny_model.GENERATION_PROMPT_END)


def test_random_checkpoint_generates_without_error(random_dir, clips):
    model = AutoModelForImageTextToText.from_pretrained(random_dir)
    processor = AutoProcessor.from_pretrained(random_dir)

    new_tokens = _generate(model, processor, clips["blue"], tiny_model.CAPTION_PROMPT)

    assert 1 <= len(new_tokens) <= tiny_model.GENERATE_MAX_NEW_TOKENS


@pytest.mark.parametrize("color", sorted(tiny_model.TRAINED_TARGETS))
def test_trained_checkpoint_captions_each_clip_differently(trained, clips, color):
    model, processor = trained

    new_tokens = _generate(model, processor, clips[color], tiny_model.CAPTION_PROMPT)

    target = tiny_model.TRAINED_TARGETS[color]["caption"]
    # Like the recorded Marlin runs: the generation prompt closes the think block, so no <think> is generated
    # and eos <|im_end|> is the only special token.
    assert processor.tokenizer.decode(new_tokens, skip_special_tokens=False) == target + "<|im_end|>"
    assert processor.tokenizer.decode(new_tokens, skip_special_tokens=True) == target


@pytest.mark.parametrize("color", sorted(tiny_model.TRAINED_TARGETS))
def test_trained_checkpoint_finds_the_query_span(trained, clips, color):
    model, processor = trained
    find = tiny_model.TRAINED_TARGETS[color]["find"]

    new_tokens = _generate(model, processor, clips[color], tiny_model.FIND_PROMPT_TEMPLATE.format(query=find["query"]))

    assert processor.tokenizer.decode(new_tokens, skip_special_tokens=False) == find["answer"] + "<|im_end|>"


def test_targets_differ_between_clips():
    red, blue = tiny_model.TRAINED_TARGETS["red"], tiny_model.TRAINED_TARGETS["blue"]

    assert red["caption"] != blue["caption"]
    assert red["find"]["answer"] != blue["find"]["answer"]


def test_training_again_with_the_same_recipe_reuses_the_checkpoint(trained_dir, clips):
    recipe = json.loads((trained_dir / tiny_model.RECIPE_FILE).read_text())
    before = (trained_dir / "model.safetensors").stat().st_mtime_ns

    tiny_model.train_tiny_checkpoint(trained_dir, clips)

    assert recipe["kind"] == "trained" and recipe["steps"] <= tiny_model.TRAIN_MAX_STEPS
    assert (trained_dir / "model.safetensors").stat().st_mtime_ns == before
