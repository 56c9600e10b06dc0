"""marlin_core.engine.step: the lean one-token step computes the model's own forward bit for bit (logits and
caches), on head shapes and dtypes beyond the tiny checkpoints', with padded rows, and falls back to a layer's
module where it does not know the layer."""

from __future__ import annotations

import copy

import pytest
import torch

from marlin_core.engine.decode import EagerStep, StepCache, prompt_positions
from marlin_core.engine.step import Stepper

VOCAB, PROMPT, STEPS = 1000, 37, 12
SHAPES = {
    # tests/tiny_model.py's text stack: grouped value heads (4 value heads share 2 key heads)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                 linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4),
    # widths that fill no SIMD vector evenly (a tail in every row), 3 query heads per key/value head
    "uneven": dict(hidden_size=96, intermediate_size=200, num_attention_heads=3, num_key_value_heads=1, head_dim=40,
                   linear_key_head_dim=24, linear_value_head_dim=20, linear_num_key_heads=3, linear_num_value_heads=6),
}


def text_model(shape: str, dtype: torch.dtype):
    """A random text-only Qwen3.5 (3 gated-delta-net layers + 1 attention layer) with non-trivial norm weights."""
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(
        vocab_size=VOCAB, num_hidden_layers=4, layer_types=["linear_attention"] * 3 + ["full_attention"],
        linear_conv_kernel_dim=4, rope_parameters={"rope_type": "default", "rope_theta": 1e7,
                                                   "partial_rotary_factor": 0.25, "mrope_section": [4, 2, 2],
                                                   "mrope_interleaved": True},
        **SHAPES[shape])
    torch.manual_seed(0)
    model = Qwen3_5ForCausalLM(config).to(dtype).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "dt_bias" in name or "A_log" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def lean_against_forward(model, batch: int) -> int:
    """Run :data:`STEPS` random tokens through the lean step and through the model's ``forward`` with its own
    cache; assert equal float32 logits every step; return the steps compared."""
    ids = torch.randint(0, VOCAB, (batch, PROMPT))
    mask = torch.ones(batch, PROMPT, dtype=torch.long)
    if batch > 1:  # left padding of different lengths
        mask[1, :5] = 0
        mask[2, :11] = 0
    padded = mask if batch > 1 else None
    stepper = Stepper(model)
    with torch.inference_mode():
        positions = prompt_positions(model, {"input_ids": ids, "attention_mask": mask})
        out = model(input_ids=ids, attention_mask=padded, position_ids=positions, use_cache=True, logits_to_keep=1)
        reference = copy.deepcopy(out.cache)
        cache = StepCache.from_prefills([out.cache], [padded], [PROMPT], STEPS, stepper.layer_types)
        step = EagerStep(stepper, cache, positions[..., -1:] + 1, STEPS)
        for t in range(STEPS - 1):
            tokens = torch.randint(0, VOCAB, (batch, 1))
            if padded is not None:
                padded = torch.cat([padded, torch.ones(batch, 1, dtype=torch.long)], dim=1)
            theirs = model(input_ids=tokens, attention_mask=padded, position_ids=positions[..., -1:] + 1 + t,
                           cache=reference, use_cache=True).logits[:, -1].float()
            assert torch.equal(step(tokens), theirs), f"step {t}"
    return STEPS - 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_lean_step_is_the_models_forward_bit_for_bit(shape, dtype):
    model = text_model(shape, dtype)
    assert Stepper(model).describe() == "lean step (4/4 layers)"  # every layer lean: nothing runs the modules
    for batch in (1, 3):
        assert lean_against_forward(model, batch) == STEPS - 1


def test_a_layer_the_step_does_not_know_runs_its_own_module():
    model = text_model("tiny", torch.float32)
    mlp = model.model.layers[1].mlp
    mlp.__class__ = type("CustomMLP", (type(mlp),), {})  # e.g. a patched or quantized layer
    assert Stepper(model).describe() == "lean step (3/4 layers)"
    assert lean_against_forward(model, 3) == STEPS - 1


def test_the_host_argmax_is_torch_argmax():
    """The blocked argmax of the CPU loop picks ``torch.argmax``'s index: first maximum, ties inside and across
    blocks, NaN, all -inf, a vocabulary without a block width."""
    from marlin_core.engine.decode import host_argmax

    torch.manual_seed(0)
    for vocab in (248_320, 65_537, 500):
        for batch in (1, 3):
            for case in range(12):
                logits = torch.randn(batch, vocab)
                if case % 3 == 1:
                    logits = logits.round()  # many ties at the maximum, across blocks
                if case % 4 == 2:
                    logits[:, vocab // 3: vocab // 3 + 4] = logits.max() + 1  # a tie inside one block
                if case == 5:
                    logits[1 % batch, vocab // 2] = float("nan")
                if case == 7:
                    logits[:] = float("-inf")
                assert torch.equal(host_argmax(logits), torch.argmax(logits, dim=-1)), (vocab, batch, case)
