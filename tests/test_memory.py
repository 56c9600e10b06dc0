"""Peak memory of generation does not grow with generated tokens x vocabulary (the engine's memory model).

A Qwen3.5 text model with Marlin's vocabulary size (248,320) and a tiny width generates from a long prompt
in a fresh process; the peak resident memory above the level before the call is read from the kernel
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``: torch's CPU allocations are invisible to
tracemalloc). glibc is told to map every block over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``) so a freed
block leaves the resident set at once: otherwise heap fragmentation can keep a step's freed logits resident
and the peak would measure the allocator, not the engine (seen: 1.2 MB or 168 MB for the same run). The
control is ``generate(output_logits=True)``, what the engine did before: it keeps every step's ``vocab``
float32 logits (~1 MiB per token), which this measurement must see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

VOCAB = 248_320
PROMPT_TOKENS = 1024
SHORT, LONG = 8, 200
STEP_BYTES = VOCAB * 4  # one step's float32 logits for one video

CHILD = r"""
import json, re, sys, types
import torch
from transformers import AutoTokenizer, BatchFeature, Qwen3_5ForCausalLM, Qwen3_5TextConfig
from marlin_core.engine.generation import Generator, GenerationSettings

torch.manual_seed(0)
config = Qwen3_5TextConfig(vocab_size=%(vocab)d, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, linear_key_head_dim=16,
                           linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=2,
                           layer_types=["linear_attention"] * 3 + ["full_attention"], tie_word_embeddings=True,
                           eos_token_id=None, pad_token_id=0)
model = Qwen3_5ForCausalLM(config).eval()
model.generation_config.eos_token_id = None  # always generate the requested number of tokens
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])  # the tiny checkpoint's: decoding needs a real one
generator = Generator(model, types.SimpleNamespace(tokenizer=tokenizer))
prompt = torch.randint(0, len(tokenizer), (1, %(prompt)d))
inputs = BatchFeature({"input_ids": prompt, "attention_mask": torch.ones_like(prompt)})

def run(mode, tokens):
    settings = GenerationSettings(tokens)
    if mode == "engine":
        return len(generator.generate(inputs, settings)[0].token_ids)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=tokens, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
    return len(out.logits)

def kib(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1))

def peak(mode, tokens):
    before = kib("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    generated = run(mode, tokens)
    assert generated == tokens, (mode, tokens, generated)
    return (kib("VmHWM") - before) * 1024

run("engine", 2), run("output_logits", 2)  # warm up: lazily allocated buffers are not what is measured
print(json.dumps([[mode, tokens, peak(mode, tokens)] for mode in ("engine", "output_logits")
                  for tokens in (%(short)d, %(long)d)]))
""" % {"vocab": VOCAB, "prompt": PROMPT_TOKENS, "short": SHORT, "long": LONG}


@pytest.fixture(scope="module")
def peaks(trained_model_dir) -> dict[tuple[str, int], int]:
    """``(mode, new tokens) -> peak bytes above the start``, one fresh process for all four runs."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    out = subprocess.run([sys.executable, "-c", CHILD, str(trained_model_dir)], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return {(mode, tokens): value for mode, tokens, value in json.loads(out.stdout.strip().splitlines()[-1])}


def test_the_measurement_sees_stored_logits(peaks):
    growth = peaks["output_logits", LONG] - peaks["output_logits", SHORT]
    assert growth > 0.6 * (LONG - SHORT) * STEP_BYTES, peaks


def test_engine_peak_does_not_grow_with_tokens_times_vocab(peaks):
    growth = peaks["engine", LONG] - peaks["engine", SHORT]
    # The KV cache of the one full-attention layer grows by 2 x 16 x 4 bytes per token: negligible here.
    assert growth < 0.05 * (LONG - SHORT) * STEP_BYTES, peaks


def test_engine_peak_is_a_few_steps_of_logits(peaks):
    """The memory model's last term (engine docstring): a few ``vocab``-sized float32 buffers per video at once
    (the head's output, generate's copy, the recorder's log-softmax and temporaries), whatever the length."""
    assert peaks["engine", LONG] < 8 * STEP_BYTES, peaks
