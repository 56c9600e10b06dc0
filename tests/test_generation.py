"""marlin_core.engine.generation / pipeline / kernels: the engine's tokens are plain ``generate``'s, confidences come
from the raw logits without storing them, keyed work, the automatic batch size and the kernel report."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from marlin_core import Marlin, WorkItem
from marlin_core.contract import CAPTION_PROMPT, find_prompt
from marlin_core.engine.generation import GenerationSettings
from marlin_core.engine.kernels import TORCH_FALLBACK, kernel_report
from marlin_core.engine.pipeline import AUTO_MAX_BATCH, PEAK_BYTES_PER_TOKEN, _fixed_batch_size, auto_batch_size

NEW_TOKENS = 40
GIB = 1024**3


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def models(request, trained_model_dir, random_model_dir):
    """The trained and the random tiny checkpoints in one dtype, on the CPU."""
    return {name: Marlin.from_pretrained(path, dtype=request.param)
            for name, path in (("trained", trained_model_dir), ("random", random_model_dir))}


def plain_generate(marlin, inputs, **kwargs) -> list[int]:
    """The seed's reference call: ``model.generate`` on the processor's inputs, cut at the first end token."""
    with torch.inference_mode():
        sequences = marlin.model.generate(**inputs, max_new_tokens=NEW_TOKENS, **kwargs)
    row = sequences[0, inputs["input_ids"].shape[1]:].tolist()
    end = next((i for i, t in enumerate(row) if t in marlin.generator.eos_ids), len(row))
    return row[:end]


@pytest.mark.parametrize("name", ["trained", "random"])
@pytest.mark.parametrize("prompt", [CAPTION_PROMPT, find_prompt("red light")])
def test_greedy_tokens_are_plain_generate_tokens(models, name, prompt, color_videos):
    """The engine's decode loop (the default) gives plain ``generate``'s tokens and the recorder's log-probs."""
    marlin = models[name]
    assert marlin.generator.decoder is not None
    inputs = marlin.prepare(color_videos["red"], prompt)
    ours = marlin.generator.generate(inputs, GenerationSettings(NEW_TOKENS))[0]
    assert ours.token_ids == plain_generate(marlin, inputs, do_sample=False)
    assert len(ours.logprobs) == len(ours.token_ids)
    loop, marlin.generator.decoder = marlin.generator.decoder, None  # today's path: generate + the recorder
    try:
        recorded = marlin.generator.generate(inputs, GenerationSettings(NEW_TOKENS))[0]
    finally:
        marlin.generator.decoder = loop
    assert recorded.token_ids == ours.token_ids
    assert recorded.logprobs == ours.logprobs  # the same arithmetic: equal, not just close


def test_padded_batch_rows_are_plain_generate_rows(models, color_videos):
    """Left-padded rows of different prompt lengths: the loop's masked steps give ``generate``'s tokens per row."""
    from marlin_core.engine.inputs import collate_inputs

    for marlin in models.values():
        items = [marlin.prepare(color_videos["red"], CAPTION_PROMPT),
                 marlin.prepare(color_videos["blue"], find_prompt("a much longer query about blue skies")),
                 marlin.prepare(color_videos["red"], find_prompt("red light"))]
        batch = collate_inputs(items, marlin.generator.tokenizer.pad_token_id)
        assert not bool(batch["attention_mask"].all())
        ours = marlin.generator.generate(batch, GenerationSettings(NEW_TOKENS))
        with torch.inference_mode():
            sequences = marlin.model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False)
        for generation, row in zip(ours, sequences[:, batch["input_ids"].shape[1]:].tolist()):
            end = next((i for i, t in enumerate(row) if t in marlin.generator.eos_ids), len(row))
            assert generation.token_ids == row[:end]


def test_logprobs_are_those_of_the_stored_logits(trained_marlin, random_marlin, color_videos):
    """The on-the-fly recorder gives what ``output_logits=True`` + log-softmax gave, without keeping the logits."""
    for marlin in (trained_marlin, random_marlin):
        inputs = marlin.prepare(color_videos["blue"], CAPTION_PROMPT)
        ours = marlin.generator.generate(inputs, GenerationSettings(NEW_TOKENS))[0]
        with torch.inference_mode():
            out = marlin.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True,
                                        return_dict_in_generate=True)
        logits = torch.stack(out.logits, dim=1).float()
        tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
        expected = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)[0]
        assert ours.logprobs == pytest.approx(expected[: len(ours.logprobs)].tolist(), abs=1e-5)


def test_sampling_draws_plain_generates_tokens_and_scores_them_on_raw_logits(random_marlin, color_videos):
    inputs = random_marlin.prepare(color_videos["red"], CAPTION_PROMPT)
    settings = GenerationSettings(NEW_TOKENS, do_sample=True, temperature=0.7, top_p=0.9)
    torch.manual_seed(11)
    ours = random_marlin.generator.generate(inputs, settings)[0]
    torch.manual_seed(11)
    assert ours.token_ids == plain_generate(random_marlin, inputs, do_sample=True, temperature=0.7, top_p=0.9)
    torch.manual_seed(11)
    with torch.inference_mode():
        out = random_marlin.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=0.7,
                                           top_p=0.9, output_logits=True, return_dict_in_generate=True)
    raw = torch.log_softmax(torch.stack(out.logits, dim=1).float(), -1)
    tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
    expected = raw.gather(-1, tokens[..., None]).squeeze(-1)[0]
    assert ours.logprobs == pytest.approx(expected[: len(ours.logprobs)].tolist(), abs=1e-5)


def test_keyed_items_come_back_under_their_keys(trained_marlin, color_videos):
    red = color_videos["red"]
    items = [WorkItem("sample-1", red), WorkItem("sample-2", red), WorkItem("sample-3", color_videos["blue"])]
    outcomes = list(trained_marlin.iter_captions(items, batch_size=2))
    assert [key for key, _ in outcomes] == ["sample-1", "sample-2", "sample-3"]
    assert outcomes[0][1]["caption"] == outcomes[1][1]["caption"] == trained_marlin.caption(red)["caption"]
    assert outcomes[2][1]["caption"] == trained_marlin.caption(color_videos["blue"])["caption"]
    finds = list(trained_marlin.iter_finds([WorkItem("a", red, ("red light", "blue sky")), WorkItem("b", red, ())]))
    assert finds[0][0] == "a" and [r["query"] for r in finds[0][1]] == ["red light", "blue sky"]
    assert finds[1][0] == "b" and isinstance(finds[1][1], ValueError) and "at least one query" in str(finds[1][1])


def test_a_batch_sorted_by_prompt_length_comes_back_in_input_order(trained_marlin, color_videos, clips):
    videos = [color_videos["red"], clips["one_second"], clips["rotated"]]  # the first prompt is longer than the second
    lengths = [trained_marlin.prepare(v, CAPTION_PROMPT)["input_ids"].shape[1] for v in videos]
    assert lengths[0] > lengths[1]
    outcomes = list(trained_marlin.iter_captions(videos, batch_size=3, max_new_tokens=12))
    assert [key for key, _ in outcomes] == videos
    assert [r["caption"] for _, r in outcomes] == [trained_marlin.caption(v, max_new_tokens=12)["caption"]
                                                    for v in videos]


def test_auto_batch_size_fits_free_memory():
    per_video = (14_664 + 256) * PEAK_BYTES_PER_TOKEN
    assert auto_batch_size(80 * GIB, 14_664, 256) == AUTO_MAX_BATCH
    assert auto_batch_size(10 * GIB, 14_664, 256) == int(10 * GIB * 0.8) // per_video
    assert auto_batch_size(GIB, 14_664, 256) == 1  # one video that may not fit still runs, alone
    sizes = [auto_batch_size(24 * GIB, prompt, 2048) for prompt in (1_000, 5_000, 20_000, 90_000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == AUTO_MAX_BATCH and sizes[-1] == 1
    assert auto_batch_size(24 * GIB, 5_000, 64, max_batch=3) == 3


def test_batch_size_defaults_to_one_on_the_cpu_and_auto_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _fixed_batch_size(None, cpu) == _fixed_batch_size("auto", cpu) == 1
    assert _fixed_batch_size(None, cuda) is None and _fixed_batch_size("auto", cuda) is None
    assert _fixed_batch_size(3, cuda) == 3
    for bad in (0, -1, True, 2.5, "four"):
        with pytest.raises(ValueError, match="batch_size"):
            _fixed_batch_size(bad, cpu)


def test_kernel_report_names_what_runs(trained_marlin):
    report = kernel_report(trained_marlin.model)
    expected = "fla" if importlib.util.find_spec("fla") else TORCH_FALLBACK
    assert report["linear_attention"] == expected
    assert report["causal_conv1d"] == ("causal_conv1d" if importlib.util.find_spec("causal_conv1d") else TORCH_FALLBACK)
    assert report["attention"] == trained_marlin.model.config._attn_implementation
    decode = "eager loop" if trained_marlin.device.type == "cpu" else "CUDA graphs"
    assert trained_marlin.kernels() == dict(report, decode=trained_marlin.generator.decode_report())
    assert trained_marlin.kernels()["decode"].startswith(decode)
