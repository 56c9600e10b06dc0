"""Our own decode loop over the model's modules: caches allocated once per request, no host sync per step.

Why not ``model.generate`` for every token: its step rebuilds masks, concatenates the key/value cache, the
attention mask, the position ids and the generated ids (four allocations and copies growing with the
sequence), runs stopping criteria that read a device flag every step, and goes through several wrappers per
call. On a GPU that makes the step launch- and host-bound (issue 23: 46 ms per step for a 2B model that reads
its weights in ~1 ms). Here:

- the prompt is prefilled by the model's own ``forward`` with the inputs ``generate`` would pass (same position
  ids, mask dropped when there is no padding, ``logits_to_keep=1``), so the first token is ``generate``'s;
- the caches are allocated once per request (:class:`StepCache`): full-attention keys/values to the request's
  maximum length, the gated-delta-net conv and recurrent states of the prefill, updated in place;
- each step runs the decoder layers' arithmetic over those caches (:class:`~marlin_core.engine.step.Stepper`:
  the model's formulas without transformers' per-token overhead, rotary cos/sin tabulated once per request,
  :class:`EagerStep`), in eager mode attending over views of exactly the tokens written so far, so the arithmetic
  is ``generate``'s (greedy tokens and log-probs equal; tested in float32 and bfloat16 on the tiny checkpoints);
- token choice, the log-prob of the chosen token (the confidence recorder, on device) and the end-of-answer
  flag stay on the device; the host reads the flag every step on the CPU (no device to wait for) and, on CUDA,
  every :data:`CHECK_EVERY` steps one check late (:class:`StopFlag`), so it never waits on the GPU.

:mod:`marlin_core.engine.graphs` captures the same step in CUDA graphs. :func:`supported` says when this loop
reproduces ``generate`` (Qwen3.5-style layers, no logits processors from the checkpoint's generation config);
otherwise the engine calls ``generate``. Slightly over 400 lines: the device loop and the host loop (with its
blocked argmax) share their result type and token-choice rules here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .step import FULL, LINEAR, Stepper, language_parts

__all__ = ["CHECK_EVERY", "DecodeResult", "EagerStep", "LayerStates", "StepCache", "Stepper", "StopFlag", "decode",
           "host_argmax", "prefill", "supported"]

# Steps between two reads of the end-of-answer flag on CUDA (each read is one step late, so it never stalls the
# GPU queue); at most ~2x this many steps run after every row ended. The CPU reads it every step.
CHECK_EVERY = 4
# Vocabularies from this size on take the blocked argmax on the CPU (:func:`host_argmax`).
ARGMAX_BLOCKS_FROM = 16384
# generation-config fields that make ``generate`` add logits processors or stopping criteria this loop does not
# reproduce, with their neutral values; a checkpoint that sets another value is decoded by ``generate``.
NEUTRAL_GENERATION = {
    "repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0), "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
    "sequence_bias": (None,), "renormalize_logits": (None, False), "exponential_decay_length_penalty": (None,),
    "guidance_scale": (None, 1.0), "watermarking_config": (None,), "stop_strings": (None,), "max_time": (None,),
    "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0), "min_p": (None,),
    "num_beams": (None, 1), "num_return_sequences": (None, 1), "low_memory": (None,), "penalty_alpha": (None,),
}


def supported(model) -> str | None:
    """Why this loop would not reproduce ``generate`` on ``model`` (a sentence), or None when it does."""
    if language_parts(model) is None:
        return f"{type(model).__name__} has no Qwen3.5-style decoder layers"
    config = model.generation_config
    for name, neutral in NEUTRAL_GENERATION.items():
        if getattr(config, name, None) not in neutral:
            return f"the checkpoint's generation config sets {name}={getattr(config, name)!r}"
    return None


def prompt_positions(model, inputs) -> torch.Tensor:
    """``(4, batch, length)`` position ids of a prompt, as ``generate`` computes them (text row, then M-RoPE rows).

    The text row counts non-padding tokens (``generate``'s ``attention_mask.cumsum - 1``); the three M-RoPE rows
    are the model's ``get_rope_index`` (video tokens get (t, h, w) positions).
    """
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    if mask is None:
        text = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
    else:
        text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    if not hasattr(model.model, "get_rope_index"):  # a text-only model: the text positions on every row
        return text[None].expand(4, -1, -1).contiguous()
    rope, _ = model.model.get_rope_index(ids, inputs["mm_token_type_ids"], video_grid_thw=inputs.get("video_grid_thw"),
                                         image_grid_thw=inputs.get("image_grid_thw"), attention_mask=mask)
    return torch.cat([text[None].to(rope), rope], dim=0)


@torch.inference_mode()
def prefill(model, inputs, positions: torch.Tensor, cache=None):
    """Run the prompt (or, with ``cache``, its part after the cached prefix) through the model.

    Args:
        model: the loaded model.
        inputs: model inputs on the model's device (``input_ids``: the whole prompt).
        positions: :func:`prompt_positions` of the whole prompt.
        cache: a transformers cache holding a prefix of the prompt (consumed), or None.

    Returns:
        ``(float32 logits of the last position (batch, vocab), the transformers cache of the prompt)``.
    """
    done = 0 if cache is None else int(cache.get_seq_length())
    mask = inputs.get("attention_mask")
    if mask is not None and bool((mask == 1).all()):
        mask = None  # as generate: no padding, no mask (SDPA then runs its causal kernel)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if done:
        extra = {k: v for k, v in extra.items() if not k.startswith("pixel_values")}
    if "mm_token_type_ids" in extra:
        extra["mm_token_type_ids"] = extra["mm_token_type_ids"][:, done:]
    out = model(input_ids=inputs["input_ids"][:, done:], attention_mask=mask, position_ids=positions[..., done:],
                cache=cache, use_cache=True, logits_to_keep=1, **extra)
    return out.logits[:, -1].to(copy=True, dtype=torch.float32), out.cache


class LayerStates:
    """The gated-delta-net states of a request, answering the calls Qwen3.5's linear-attention layers make on a
    transformers ``Cache`` (5.24 API) in a single-token step: get the conv window (updated in place by the conv
    kernel) and the recurrent state, store the new recurrent state in place."""

    conv: dict
    recurrent: dict

    def get_conv_state(self, layer_idx: int, state_idx: int = 0) -> torch.Tensor:
        return self.conv[layer_idx]

    def get_recurrent_state(self, layer_idx: int, state_idx: int = 0) -> torch.Tensor:
        return self.recurrent[layer_idx]

    def is_recording_past(self, layer_idx: int) -> bool:
        return False

    def update_recurrent_state(self, recurrent_states: torch.Tensor, layer_idx: int, state_idx: int = 0,
                               **kwargs) -> torch.Tensor:
        return self.recurrent[layer_idx].copy_(recurrent_states)


class StepCache(LayerStates):
    """The caches of one request, laid out for one-token steps; duck-typed as transformers' ``Cache`` for the
    calls Qwen3.5's decoder layers make in a single-token step.

    Rows may come from several prefills of different lengths (``find_many``'s queries): each row's tokens end at
    the same column, the columns before a shorter row's first token are masked out. Attention keys carry their
    rotary positions already, so where a token sits in the buffer does not change what it means.

    Attributes:
        keys, values: per full-attention layer, ``(batch, kv heads, capacity, head dim)``; columns ``[0, length)``
            are written.
        conv, recurrent: per gated-delta-net layer, the conv window and recurrent state (updated in place).
        mask: ``(batch, 1, 1, capacity)`` bool, True where a row has a token; None when no row has a gap (then
            attention runs unmasked, exactly as ``generate`` does without padding).
        length: columns written (host integer: no device read needed to slice).
    """

    def __init__(self, keys: dict, values: dict, conv: dict, recurrent: dict, mask: torch.Tensor | None,
                 length: int):
        self.keys, self.values, self.conv, self.recurrent = keys, values, conv, recurrent
        self.mask, self.length = mask, length

    @classmethod
    @torch.inference_mode()
    def from_prefills(cls, caches: Sequence, masks: Sequence[torch.Tensor | None], lengths: Sequence[int],
                      new_tokens: int, layer_types: Sequence[str]) -> "StepCache":
        """Stack transformers caches (batch ``b_i``, ``lengths[i]`` tokens) into one request's buffers.

        Args:
            caches: prefilled transformers caches, one per group of rows.
            masks: each group's 2D attention mask ``(b_i, lengths[i])`` (None: no padding).
            lengths: tokens in each cache.
            new_tokens: decode steps the buffers must hold beyond the longest prompt.
            layer_types: the text config's ``layer_types``.
        """
        width = max(lengths)
        capacity = width + new_tokens
        rows = [int(_batch_of(c, layer_types)) for c in caches]
        keys, values, conv, recurrent = {}, {}, {}, {}
        for index, kind in enumerate(layer_types):
            layers = [c.layers[index] for c in caches]
            if kind == LINEAR:
                conv[index] = torch.cat([layer.conv_states[0] for layer in layers]) if len(layers) > 1 \
                    else layers[0].conv_states[0]
                recurrent[index] = torch.cat([layer.recurrent_states[0] for layer in layers]) if len(layers) > 1 \
                    else layers[0].recurrent_states[0].contiguous()
                continue
            first = layers[0].keys
            shape = (sum(rows), first.shape[1], capacity, first.shape[3])
            keys[index] = first.new_zeros(shape)
            values[index] = layers[0].values.new_zeros(shape[:3] + (layers[0].values.shape[3],))
            row = 0
            for layer, count, length in zip(layers, rows, lengths):
                keys[index][row: row + count, :, width - length: width] = layer.keys
                values[index][row: row + count, :, width - length: width] = layer.values
                layer.keys = layer.values = None  # free the prefill's copy now
                row += count
        mask = None
        if any(m is not None for m in masks) or len(set(lengths)) > 1:
            device = next(iter(keys.values())).device if keys else caches[0].layers[0].conv_states[0].device
            mask = torch.zeros((sum(rows), 1, 1, capacity), dtype=torch.bool, device=device)
            mask[..., width:] = True  # decode columns: every row writes one token per step
            row = 0
            for group_mask, count, length in zip(masks, rows, lengths):
                target = mask[row: row + count, 0, 0, width - length: width]
                target.copy_(group_mask.bool() if group_mask is not None else torch.ones_like(target))
                row += count
        return cls(keys, values, conv, recurrent, mask, width)

    @property
    def batch_size(self) -> int:
        tensors = list(self.keys.values()) or list(self.conv.values())
        return int(tensors[0].shape[0])

    def attention_mask(self) -> torch.Tensor | None:
        """The mask for the next step's keys (the columns up to and including the one about to be written)."""
        return None if self.mask is None else self.mask[..., : self.length + 1]

    def advance(self) -> None:
        self.length += 1

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write this step's key/value at column ``length``; return views of the columns written so far."""
        end = self.length + key_states.shape[-2]
        self.keys[layer_idx][:, :, self.length: end].copy_(key_states)
        self.values[layer_idx][:, :, self.length: end].copy_(value_states)
        return self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]


def _batch_of(cache, layer_types: Sequence[str]) -> int:
    for index, kind in enumerate(layer_types):
        layer = cache.layers[index]
        return layer.conv_states[0].shape[0] if kind == LINEAR else layer.keys.shape[0]
    raise ValueError("empty cache")


class EagerStep:
    """The eager step of one request: ``step(tokens (batch, 1)) -> float32 logits (batch, vocab)``.

    Rotary cos/sin are computed once for all the request's steps (where the model's RoPE allows it); the cache
    advances one column per call. Text positions are kept (advanced in place) only for layers that run through
    the model's own modules or a RoPE computed per step.
    """

    def __init__(self, stepper: Stepper, cache: StepCache, positions: torch.Tensor, steps: int):
        """
        Args:
            stepper: the model's step.
            cache: the request's caches (consumed: written and advanced by each call).
            positions: ``(4, batch, 1)`` position ids of the first generated token (text row, then M-RoPE rows).
            steps: the most calls this request makes.
        """
        self.stepper, self.cache, self.positions = stepper, cache, positions
        self.table = stepper.request_rotary(positions[1:], steps)
        self.track = self.table is None or not all(plan.lean for plan in stepper.plans)
        self.count = 0

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        stepper = self.stepper
        if self.table is not None:
            rotary = self.table[self.count]
        else:
            rotary = stepper.step_rotary(*stepper.rotary(self.positions[1:]))
        logits = stepper.logits(tokens, rotary, self.cache, self.cache.attention_mask(), self.positions[0])
        self.cache.advance()
        self.count += 1
        if self.track:
            self.positions.add_(1)
        return logits if logits.dtype == torch.float32 else logits.float()


class StopFlag:
    """Whether every row has ended, read without stalling the device.

    On the CPU the flag is read every step (a read of host memory). On CUDA a copy of it is queued into pinned host
    memory every ``every`` steps and read at the next check, by when the device has long finished it: the host
    never waits for the step in flight. Other accelerators (MPS) read it every ``every`` steps directly.
    """

    def __init__(self, device: torch.device, every: int = CHECK_EVERY):
        self.device, self.every = device, every
        self.pending = False
        if device.type == "cuda":
            self.host = torch.zeros((), dtype=torch.bool, pin_memory=True)
            self.event = torch.cuda.Event()

    def __call__(self, finished: torch.Tensor, step: int) -> bool:
        if self.device.type == "cpu":
            return bool(finished.all())
        if step % self.every:
            return False
        if self.device.type != "cuda":
            return bool(finished.all())
        done = False
        if self.pending:
            self.event.synchronize()
            done = bool(self.host)
        self.host.copy_(finished.all(), non_blocking=True)
        self.event.record()
        self.pending = True
        return done


@dataclass
class DecodeResult:
    """Generated ids ``(batch, steps)`` (pad after a row's end) and the raw log-prob of each, on the CPU."""

    tokens: torch.Tensor
    logprobs: torch.Tensor


@torch.inference_mode()
def decode(step, first_logits: torch.Tensor, max_new_tokens: int, eos_ids: Sequence[int], pad_id: int,
           warpers=None, device: torch.device | None = None) -> DecodeResult:
    """Choose tokens until every row ended or ``max_new_tokens``; ``step(tokens (batch, 1))`` gives the next logits.

    Token choice is ``generate``'s: greedy argmax of the float32 logits, or (``warpers``: the sampling processors)
    ``multinomial(softmax(warpers(logits)))``; a row that ended gets ``pad_id``. The log-prob of each chosen token
    under the raw logits is recorded on the device (the confidence recorder, before any warper).

    Args:
        step: the model step (eager :class:`Stepper` bound to a cache, or a CUDA-graph replay).
        first_logits: float32 logits of the prompt's last position ``(batch, vocab)``.
        max_new_tokens: generation cap.
        eos_ids: end-of-answer token ids.
        pad_id: id written after a row's end (``generate``'s pad).
        warpers: a ``LogitsProcessorList`` of sampling warpers, or None for greedy.
        device: where the loop runs (default: the logits').
    """
    device = device or first_logits.device
    if device.type == "cpu":
        return _decode_on_host(step, first_logits, max_new_tokens, set(eos_ids), pad_id, warpers)
    batch = first_logits.shape[0]
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    pad = torch.tensor(pad_id, dtype=torch.long, device=device)
    stop = StopFlag(device)
    logits, steps = first_logits, 0
    while True:
        if warpers is None:
            chosen = torch.argmax(logits, dim=-1)
        else:
            probs = torch.softmax(warpers(None, logits.clone()), dim=-1)
            chosen = torch.multinomial(probs, num_samples=1).squeeze(1)
        chosen = torch.where(finished, pad, chosen)
        tokens[:, steps] = chosen
        logprobs[:, steps] = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        finished |= torch.isin(chosen, eos)
        steps += 1
        if steps == max_new_tokens or stop(finished, steps):
            break
        logits = step(chosen[:, None])
    return DecodeResult(tokens[:, :steps].cpu(), logprobs[:, :steps].cpu())


@functools.lru_cache(maxsize=8)
def _argmax_block(vocab: int) -> int | None:
    """The block width :func:`host_argmax` splits a vocabulary into (a divisor of it), or None for small ones."""
    if vocab < ARGMAX_BLOCKS_FROM:
        return None
    return next((width for width in range(2048, 63, -1) if vocab % width == 0), None)


def host_argmax(logits: torch.Tensor) -> torch.Tensor:
    """``torch.argmax(logits, dim=-1)`` (the first maximal index of each row) of host-memory float logits, in two
    passes: the maximum of each block of the vocabulary (vectorized; PyTorch's CPU argmax is not, and costs
    ~0.2 ms per row of Marlin's 248,320 tokens), then the argmax inside the first block holding the row's
    maximum. A row with NaN (which argmax treats as the maximum) takes ``torch.argmax``."""
    batch, vocab = logits.shape
    width = _argmax_block(vocab)
    if width is None:
        return torch.argmax(logits, dim=-1)
    blocks = logits.view(batch, vocab // width, width)
    peaks = blocks.amax(dim=-1)
    top = peaks.amax(dim=-1, keepdim=True)
    if bool(torch.isnan(top).any()):
        return torch.argmax(logits, dim=-1)
    block = (peaks == top).byte().argmax(dim=-1)
    inside = blocks[torch.arange(batch), block].argmax(dim=-1)
    return block * width + inside


def _choose(logits: torch.Tensor, warpers) -> torch.Tensor:
    """``generate``'s token choice: argmax, or a draw from ``softmax(warpers(logits))``."""
    if warpers is None:
        return host_argmax(logits)
    probs = torch.softmax(warpers(None, logits.clone()), dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def _decode_on_host(step, first_logits: torch.Tensor, max_new_tokens: int, eos: set[int], pad_id: int,
                    warpers) -> DecodeResult:
    """:func:`decode` where the tensors are in host memory: the chosen ids are read every step (no device to wait
    for), so the end of each row is tracked in Python and no flag tensors are kept until a row of a batch ends."""
    batch = first_logits.shape[0]
    chosen_steps, logprob_steps = [], []
    ended = [False] * batch
    finished, pad = None, torch.tensor(pad_id)
    logits = first_logits
    while True:
        chosen = _choose(logits, warpers)
        if finished is not None:
            chosen = torch.where(finished, pad, chosen)
        chosen_steps.append(chosen)
        logprob_steps.append(torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]))
        new_ends = [row for row, token in enumerate(chosen.tolist()) if token in eos and not ended[row]]
        for row in new_ends:
            ended[row] = True
        if len(chosen_steps) == max_new_tokens or all(ended):
            break
        if new_ends:
            finished = torch.tensor(ended)
        logits = step(chosen[:, None])
    return DecodeResult(torch.stack(chosen_steps, dim=1), torch.cat(logprob_steps, dim=1))
