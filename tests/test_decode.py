"""marlin_core.engine.decode / loop / graphs: the engine's own decode loop against plain ``generate``, find_many's
queries decoded as one batch, the static (CUDA-graph) step, the decode switch, and CUDA graphs on a GPU."""

from __future__ import annotations

import pytest
import torch

from marlin_core import Marlin
from marlin_core.contract import CAPTION_PROMPT, find_prompt
from marlin_core.engine.generation import GenerationSettings
from marlin_core.engine.inputs import collate_inputs

NEW_TOKENS = 40
QUERIES = ["red light", "blue sky", "red fades into a much longer query than the others"]


class HeadCalls:
    """Records the batch size of every call of the model's language-model head (one per prefill or step)."""

    def __init__(self, marlin):
        self.batches: list[int] = []
        self.handle = marlin.model.lm_head.register_forward_hook(
            lambda module, args, output: self.batches.append(int(output.shape[0])))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def answers(marlin, color_videos) -> list:
    """Greedy token ids of a padded caption/find batch and of find_many's queries."""
    items = [marlin.prepare(color_videos["red"], CAPTION_PROMPT),
             marlin.prepare(color_videos["blue"], find_prompt("a much longer query about blue skies")),
             marlin.prepare(color_videos["red"], find_prompt("red light"))]
    batch = collate_inputs(items, marlin.generator.tokenizer.pad_token_id)
    rows = [g.token_ids for g in marlin.generator.generate(batch, GenerationSettings(NEW_TOKENS))]
    return rows + [r["raw"] for r in marlin.find_many(color_videos["red"], QUERIES)]


def test_find_many_decodes_its_queries_as_one_batch(trained_marlin, color_videos):
    with HeadCalls(trained_marlin) as calls:
        many = trained_marlin.find_many(color_videos["red"], QUERIES)
    # the shared prefix, each query's own suffix, then every decode step with all queries at once
    assert calls.batches[: 1 + len(QUERIES)] == [1] * (1 + len(QUERIES))
    assert set(calls.batches[1 + len(QUERIES):]) == {len(QUERIES)}
    single = [trained_marlin.find(color_videos["red"], q) for q in QUERIES]
    assert [r["raw"] for r in many] == [r["raw"] for r in single]
    assert [r["span"] for r in many] == [r["span"] for r in single]
    assert [r["confidence"] for r in many] == pytest.approx([r["confidence"] for r in single], abs=1e-5)


def test_decoding_stops_at_the_end_of_the_answer(trained_marlin, color_videos):
    """The end-of-answer flag is read every step on the CPU: no step runs after every row ended."""
    inputs = trained_marlin.prepare(color_videos["red"], find_prompt("red light"))
    with HeadCalls(trained_marlin) as calls:
        generation = trained_marlin.generator.generate(inputs, GenerationSettings(NEW_TOKENS))[0]
    assert not generation.truncated and len(generation.token_ids) < NEW_TOKENS - 1
    # prefill gives token 1; each step one more; the step that produced the end token is the last
    assert len(calls.batches) == len(generation.token_ids) + 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_static_step_gives_the_eager_loops_tokens(trained_model_dir, random_model_dir, color_videos, dtype):
    """The step CUDA graphs capture (full-width masked attention over one pool, spare rows in a bucket), run eagerly
    on the CPU, answers as the eager loop does; a pool grown by a larger request still answers the same."""
    for path in (trained_model_dir, random_model_dir):
        eager = Marlin.from_pretrained(path, dtype=dtype, decode="eager")
        static = Marlin.from_pretrained(path, dtype=dtype, decode="static")
        one = static.prepare(color_videos["red"], CAPTION_PROMPT)
        first = static.generator.generate(one, GenerationSettings(NEW_TOKENS))[0].token_ids
        assert first == eager.generator.generate(one, GenerationSettings(NEW_TOKENS))[0].token_ids
        assert answers(static, color_videos) == answers(eager, color_videos)
        assert "buckets" in static.kernels()["decode"] and "captured: 1, 2, 4" in static.kernels()["decode"]


def test_decode_switch(trained_model_dir, color_videos, monkeypatch):
    plain = Marlin.from_pretrained(trained_model_dir, decode="generate")
    assert plain.generator.decoder is None and plain.kernels()["decode"].startswith("model.generate")
    loop = Marlin.from_pretrained(trained_model_dir)
    assert plain.caption(color_videos["red"]) == loop.caption(color_videos["red"])
    assert plain.find_many(color_videos["red"], QUERIES) == loop.find_many(color_videos["red"], QUERIES)
    monkeypatch.setenv("MARLIN_DECODE", "generate")
    assert Marlin.from_pretrained(trained_model_dir).generator.decoder is None
    monkeypatch.setenv("MARLIN_DECODE", "fast")
    with pytest.raises(ValueError, match="decode='fast'"):
        Marlin.from_pretrained(trained_model_dir)


def test_a_checkpoint_with_logits_processors_is_decoded_by_generate(trained_model_dir, color_videos):
    """A generation config the loop does not reproduce (here a repetition penalty) keeps plain ``generate``."""
    marlin = Marlin.from_pretrained(trained_model_dir)
    marlin.model.generation_config.repetition_penalty = 1.3
    fallback = Marlin(marlin.model, marlin.processor)
    assert fallback.generator.decoder is None
    assert "repetition_penalty=1.3" in fallback.kernels()["decode"]
    inputs = fallback.prepare(color_videos["red"], CAPTION_PROMPT)
    ours = fallback.generator.generate(inputs, GenerationSettings(NEW_TOKENS))[0]
    with torch.inference_mode():
        sequences = fallback.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    row = sequences[0, inputs["input_ids"].shape[1]:].tolist()
    assert ours.token_ids == row[: next((i for i, t in enumerate(row) if t in fallback.generator.eos_ids), len(row))]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_give_the_static_steps_tokens_in_bfloat16(trained_model_dir, random_model_dir, color_videos):
    for path in (trained_model_dir, random_model_dir):
        graphs = Marlin.from_pretrained(path, device="cuda", dtype="bfloat16")
        static = Marlin.from_pretrained(path, device="cuda", dtype="bfloat16", decode="static")
        assert answers(graphs, color_videos) == answers(static, color_videos)
        assert graphs.kernels()["decode"].startswith("CUDA graphs")
        assert "captured: 1, 2, 4" in graphs.kernels()["decode"]
    trained = Marlin.from_pretrained(trained_model_dir, device="cuda", dtype="bfloat16")
    plain = Marlin.from_pretrained(trained_model_dir, device="cuda", dtype="bfloat16", decode="generate")
    assert trained.caption(color_videos["red"]) == plain.caption(color_videos["red"])
