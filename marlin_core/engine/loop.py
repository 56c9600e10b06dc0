"""Requests through the decode loop: one prompt batch, or ``find_many``'s queries decoded together.

:class:`DecodeLoop` is what :class:`marlin_core.engine.generation.Generator` calls instead of ``generate`` (where
:func:`marlin_core.engine.decode.supported` holds). It prefills, builds the request's caches, and decodes with
the eager step or, on CUDA, the step replayed from CUDA graphs (:mod:`marlin_core.engine.graphs`).

``find_many``'s queries share the video prefix: it is run once (the caller's ``prefix_cache``), each query's own
text is prefilled on a copy of it (a few dozen tokens each), and the queries are decoded as one batch, so ten
queries cost about one decode instead of ten. The batch's cache holds the prefix once per query (the prefix's
keys/values are not shared across rows), so on CUDA the queries of one batch are limited to what the free
memory holds (:func:`queries_per_batch`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import torch

from .decode import FULL, DecodeResult, EagerStep, StepCache, Stepper, decode, prefill, prompt_positions
from .graphs import BUCKETS, StaticDecoder

__all__ = ["DECODE_MODES", "DecodeLoop", "decode_mode", "queries_per_batch"]

# "auto": CUDA graphs on CUDA, the eager loop elsewhere; "eager": the eager loop everywhere; "static": the graph
# step run eagerly (for checks); "generate": plain ``model.generate`` (no loop).
DECODE_MODES = ("auto", "eager", "static", "generate")
DECODE_ENV = "MARLIN_DECODE"
# Share of the free GPU memory one batch of queries may plan for its caches (the rest: the step's activations).
QUERY_MEMORY_SHARE = 0.5


def decode_mode(mode: str | None = None) -> str:
    """The decode mode: ``mode``, else ``$MARLIN_DECODE``, else ``"auto"``."""
    chosen = mode or os.environ.get(DECODE_ENV) or "auto"
    if chosen not in DECODE_MODES:
        raise ValueError(f"decode={chosen!r}: use one of {', '.join(DECODE_MODES)}")
    return chosen


def queries_per_batch(queries: int, tokens_per_query: int, bytes_per_token: int, free_bytes: int | None) -> int:
    """How many of ``queries`` to decode in one batch: all (up to the largest graph bucket) unless the free memory
    (CUDA; None elsewhere) cannot hold their caches of ``tokens_per_query`` tokens."""
    most = min(queries, BUCKETS[-1])
    if free_bytes is None:
        return most
    fits = int(free_bytes * QUERY_MEMORY_SHARE) // max(1, tokens_per_query * bytes_per_token)
    return max(1, min(most, fits))


class DecodeLoop:
    """The decode loop of one loaded model (see the module docstring)."""

    def __init__(self, model, eos_ids: Sequence[int], pad_id: int, mode: str = "auto"):
        self.model = model
        self.stepper = Stepper(model)
        self.eos_ids, self.pad_id = list(eos_ids), pad_id
        device = next(model.parameters()).device
        use_graphs = mode == "auto" and device.type == "cuda"
        self.static = StaticDecoder(self.stepper, pad_id, use_graphs) if use_graphs or mode == "static" else None

    def describe(self) -> str:
        """What decodes: ``"eager loop"``, or the static step's state (CUDA graphs, buckets captured), and how
        many layers the lean step runs (e.g. ``"eager loop, lean step (4/4 layers)"``)."""
        loop = self.static.describe() if self.static is not None else "eager loop"
        return f"{loop}, {self.stepper.describe()}"

    @torch.inference_mode()
    def generate(self, inputs, max_new_tokens: int, warpers=None) -> DecodeResult:
        """Decode a (possibly left-padded) prompt batch on the model's device."""
        positions = prompt_positions(self.model, inputs)
        logits, cache = prefill(self.model, inputs, positions)
        mask = inputs.get("attention_mask")
        mask = None if mask is None or bool((mask == 1).all()) else mask
        state = StepCache.from_prefills([cache], [mask], [positions.shape[-1]], max_new_tokens,
                                        self.stepper.layer_types)
        del cache
        return self._decode(state, positions[..., -1:] + 1, logits, max_new_tokens, warpers)

    @torch.inference_mode()
    def generate_queries(self, prefix_cache, queries: Sequence, max_new_tokens: int) -> list[DecodeResult]:
        """Greedy answers to prompts that share the prefix held by ``prefix_cache`` (not consumed), one result per
        prompt; ``queries`` are each prompt's full inputs without pixel values, on the model's device."""
        longest = max(int(q["input_ids"].shape[1]) for q in queries) + max_new_tokens
        batch = queries_per_batch(len(queries), longest, self.kv_bytes_per_token(), _free_cuda_bytes(self.model))
        results: list[DecodeResult] = []
        for start in range(0, len(queries), batch):
            group = queries[start: start + batch]
            caches, lengths, last, first = [], [], [], []
            for inputs in group:
                positions = prompt_positions(self.model, inputs)
                logits, cache = prefill(self.model, inputs, positions, cache=copy.deepcopy(prefix_cache))
                caches.append(cache)
                lengths.append(positions.shape[-1])
                last.append(positions[..., -1:] + 1)
                first.append(logits)
            state = StepCache.from_prefills(caches, [None] * len(group), lengths, max_new_tokens,
                                            self.stepper.layer_types)
            del caches
            both = self._decode(state, torch.cat(last, dim=1), torch.cat(first), max_new_tokens, None)
            results.extend(DecodeResult(both.tokens[i: i + 1], both.logprobs[i: i + 1]) for i in range(len(group)))
        return results

    def kv_bytes_per_token(self) -> int:
        """Bytes of full-attention keys and values one token of one row holds."""
        config = self.stepper.lm.config
        layers = sum(kind == FULL for kind in self.stepper.layer_types)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return 2 * layers * config.num_key_value_heads * head_dim * self.model.dtype.itemsize

    def _decode(self, state: StepCache, positions: torch.Tensor, logits: torch.Tensor, max_new_tokens: int,
                warpers) -> DecodeResult:
        step = self.static.bind(state, positions) if self.static is not None else None
        if step is None:
            step = EagerStep(self.stepper, state, positions, max_new_tokens)
        return decode(step, logits, max_new_tokens, self.eos_ids, self.pad_id, warpers)


def _free_cuda_bytes(model) -> int | None:
    device = next(model.parameters()).device
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
