"""``generate`` on prepared inputs: decoding settings, end of answer, per-token log-probs, the shared video prefix.

Everything here works on model inputs (``BatchFeature`` s from :mod:`marlin_core.engine.inputs`); videos, windows and
batching live in :mod:`marlin_core.engine.pipeline`. Answers are turned into the reference result dicts by
:func:`caption_answer` / :func:`find_answer` (the contract's parsers plus a confidence per time range).

Greedy answers are the tokens of a plain ``model.generate(**inputs, max_new_tokens=N, do_sample=False)`` on
the same inputs: the only thing added to the call is :class:`~marlin_core.engine.confidence.ChosenTokenLogprobs`,
which returns the scores it is given unchanged (tested on the tiny checkpoint in float32 and bfloat16).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    BatchFeature,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from . import confidence as conf
from ..contract import parse_caption, parse_find
from .decode import supported
from .inputs import chat_text
from .loop import DecodeLoop, decode_mode

__all__ = ["Generation", "GenerationSettings", "Generator", "caption_answer", "find_answer"]

# transformers' top_k when neither the call nor the checkpoint's generation_config sets one (5.24,
# GenerationConfig defaults); sampling keeps it, as the seed's ``generate(do_sample=True, ...)`` did.
TRANSFORMERS_DEFAULT_TOP_K = 50
VISION_END = "<|vision_end|>"


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs of one request; greedy by default like the reference helpers.

    Attributes:
        max_new_tokens: generation cap; an answer that reaches it is flagged ``truncated``.
        do_sample: sample instead of greedy decoding.
        temperature, top_p: sampling warpers (ignored when greedy).
    """

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate``; sampling warpers come as processors (see below), not as flags."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=1.0, top_k=0, top_p=1.0)  # no warpers of generate's own, before the recorder
        return kwargs

    def logits_processors(self, recorder: conf.ChosenTokenLogprobs, top_k: int | None) -> LogitsProcessorList:
        """The recorder first (raw logits), then the sampling warpers in transformers' order.

        Args:
            recorder: the log-prob recorder of this call.
            top_k: the checkpoint's ``generation_config.top_k`` (None: transformers' default).
        """
        processors: list = [recorder]
        if self.do_sample:
            if self.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(self.temperature))
            top_k = TRANSFORMERS_DEFAULT_TOP_K if top_k is None else top_k
            if top_k:
                processors.append(TopKLogitsWarper(top_k))
            if self.top_p < 1.0:
                processors.append(TopPLogitsWarper(self.top_p))
        return LogitsProcessorList(processors)


@dataclass
class Generation:
    """One decoded answer: its text (special tokens skipped), per-token log-probs and cut-off flag."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    truncated: bool


class Generator:
    """A loaded model and processor, and the ways this project calls ``generate`` on them."""

    def __init__(self, model, processor, decode: str | None = None):
        """
        Args:
            model, processor: the loaded checkpoint.
            decode: ``"auto"`` (default; ``$MARLIN_DECODE`` overrides it): this project's decode loop, with CUDA
                graphs on CUDA; ``"eager"``: the loop without graphs; ``"generate"``: plain ``model.generate``
                (see :mod:`marlin_core.engine.loop`). Checkpoints the loop does not reproduce use ``generate``.
        """
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.eos_ids = self._eos_token_ids()
        self.vision_end_id = self.tokenizer.convert_tokens_to_ids(VISION_END)
        mode = decode_mode(decode)
        self.decoder: DecodeLoop | None = None
        self.decode_fallback = "decode='generate'" if mode == "generate" else supported(model)
        if self.decode_fallback is None:
            self.decoder = DecodeLoop(model, sorted(self.eos_ids), self._pad_token_id(), mode)

    def decode_report(self) -> str:
        """What decodes answers: the loop (eager, or CUDA graphs and their buckets) or plain ``generate`` and why."""
        if self.decoder is not None:
            return self.decoder.describe()
        return f"model.generate ({self.decode_fallback})"

    def _pad_token_id(self) -> int:
        pad = getattr(self.model.generation_config, "pad_token_id", None)
        if pad is None:
            pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else min(self.eos_ids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _eos_token_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos if isinstance(eos, (list, tuple)) else [eos])

    def cast_pixels(self, inputs: BatchFeature) -> BatchFeature:
        """Frames in the model's dtype: what its patch embedding casts them to anyway (same values), in less memory."""
        if "pixel_values_videos" in inputs:
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        return inputs

    @torch.inference_mode()
    def generate(self, inputs: BatchFeature, settings: GenerationSettings, cache=None) -> list[Generation]:
        """Answer a (possibly batched, left-padded) input and decode each row.

        With :attr:`decoder` set (the default where :func:`marlin_core.engine.decode.supported` holds) the
        tokens come from this project's decode loop, else from ``model.generate``; both give the same greedy
        tokens and log-probs (tested).

        Args:
            inputs: model inputs, batch size >= 1.
            settings: the decoding settings.
            cache: a key/value cache of a prefix of ``inputs`` (consumed: pass a copy); plain ``generate`` only.
        """
        inputs = self.cast_pixels(BatchFeature(dict(inputs)).to(self.device))  # a copy: the caller's stays put
        if self.decoder is None or cache is not None:
            new_tokens, logprobs = self._plain_generate(inputs, settings, cache)
        else:
            warpers = self._warpers(settings)
            result = self.decoder.generate(inputs, settings.max_new_tokens, warpers)
            new_tokens, logprobs = result.tokens, result.logprobs
        return self._generations(new_tokens, logprobs, settings)

    def _plain_generate(self, inputs: BatchFeature, settings: GenerationSettings, cache):
        """``model.generate`` with the confidence recorder: ``(new token ids, their log-probs)`` on the CPU."""
        recorder = conf.ChosenTokenLogprobs()
        extra = {} if cache is None else {"cache": cache}
        sequences = self.model.generate(
            **inputs,
            **settings.generate_kwargs(),
            **extra,
            logits_processor=settings.logits_processors(recorder, self.model.generation_config.top_k),
        )
        new_tokens = sequences[:, inputs["input_ids"].shape[1]:]
        return new_tokens.cpu(), recorder.finish(new_tokens)

    def _warpers(self, settings: GenerationSettings):
        """The sampling warpers ``generate`` would run after the recorder, or None for greedy decoding."""
        if not settings.do_sample:
            return None
        return LogitsProcessorList(settings.logits_processors(conf.ChosenTokenLogprobs(),
                                                              self.model.generation_config.top_k)[1:])

    def _generations(self, new_tokens: torch.Tensor, logprobs: torch.Tensor, settings: GenerationSettings):
        generations = []
        for row, row_lps in zip(new_tokens.tolist(), logprobs.tolist()):
            end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            truncated = end is None and len(row) >= settings.max_new_tokens
            kept = row if end is None else row[:end]
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            generations.append(Generation(text, kept, row_lps[: len(kept)], truncated))
        return generations

    def generate_queries(
        self, first: BatchFeature, sampled, prompts: list[str], settings: GenerationSettings
    ) -> list[Generation]:
        """One answer per prompt on one video; ``first`` is the prepared input of ``prompts[0]``.

        With several prompts and greedy decoding, the key/value cache of the prompt prefix they share
        (everything up to and including ``<|vision_end|>``: the video tokens, their timestamps and the
        vision encoder's output) is computed once. With the decode loop, each prompt's own text is prefilled
        on a copy of it and all prompts are decoded as one batch (:meth:`DecodeLoop.generate_queries`);
        with plain ``generate``, the cache is copied for each prompt in turn. Answers equal independent
        calls (tested).
        """
        if len(prompts) == 1 or settings.do_sample:
            others = [self.query_inputs(first, self.prefix_length(first), sampled, p) for p in prompts[1:]]
            others = [BatchFeature(dict(o, pixel_values_videos=first["pixel_values_videos"])) for o in others]
            return [self.generate(inputs, settings)[0] for inputs in [first, *others]]
        prefix_len = self.prefix_length(first)
        cache = self.prefix_cache(first, prefix_len)
        queries = [self.query_inputs(first, prefix_len, sampled, prompt) for prompt in prompts]
        if self.decoder is not None:
            queries = [BatchFeature(dict(q)).to(self.device) for q in queries]
            results = self.decoder.generate_queries(cache, queries, settings.max_new_tokens)
            return [g for r in results for g in self._generations(r.tokens, r.logprobs, settings)]
        return [self.generate(inputs, settings, cache=copy.deepcopy(cache))[0] for inputs in queries]

    def prefix_length(self, inputs: BatchFeature) -> int:
        """Tokens up to and including the last ``<|vision_end|>``: the part every query shares."""
        return int((inputs["input_ids"][0] == self.vision_end_id).nonzero()[-1]) + 1

    def query_inputs(self, shared: BatchFeature, prefix_len: int, sampled, prompt: str) -> BatchFeature:
        """Inputs for ``prompt`` on the video of ``shared`` without running the processor on the frames again.

        The shared prefix (video tokens and timestamps) is reused; only the text after ``<|vision_end|>``
        is tokenized (a special token, so BPE never merges across it). The result equals
        ``prepare_inputs(processor, sampled, prompt)`` minus ``pixel_values_videos`` (tested).
        """
        text = chat_text(self.processor, sampled.path, prompt, sampled.options)
        suffix = text.split(VISION_END, 1)[1]
        suffix_ids = self.tokenizer(suffix, add_special_tokens=False, return_tensors="pt")["input_ids"]
        input_ids = torch.cat([shared["input_ids"][:, :prefix_len], suffix_ids], dim=1)
        mm_types = torch.cat([shared["mm_token_type_ids"][:, :prefix_len], torch.zeros_like(suffix_ids)], dim=1)
        return BatchFeature({
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": mm_types,
            "video_grid_thw": shared["video_grid_thw"],
        })

    @torch.inference_mode()
    def prefix_cache(self, inputs: BatchFeature, prefix_len: int):
        """Run the model (vision encoder included) on the shared prefix; return its key/value cache.

        Only the cache is needed, so the language-model head runs on one position (``logits_to_keep=1``):
        full logits would be ``prefix_len x vocab`` (43,821 x 248,320 x 2 bytes = 20 GiB on a 60 s video).
        """
        prefix = {
            "input_ids": inputs["input_ids"][:, :prefix_len],
            "attention_mask": inputs["attention_mask"][:, :prefix_len],
            "mm_token_type_ids": inputs["mm_token_type_ids"][:, :prefix_len],
            "pixel_values_videos": inputs["pixel_values_videos"].to(self.model.dtype),
            "video_grid_thw": inputs["video_grid_thw"],
        }
        prefix = {k: v.to(self.device) for k, v in prefix.items()}
        return self.model(**prefix, use_cache=True, logits_to_keep=1).cache


def _numbers(tokenizer, generation: Generation):
    text, offsets = conf.char_offsets(tokenizer, generation.token_ids)
    return conf.number_confidences(text, offsets, generation.logprobs)


def caption_answer(generation: Generation, tokenizer) -> dict:
    """The reference caption dict, plus ``truncated`` and a ``confidence`` per event."""
    result = parse_caption(generation.text, truncated=generation.truncated)
    ranges = [(event["start"], event["end"]) for event in result["events"]]
    for event, value in zip(result["events"], conf.range_confidences(ranges, _numbers(tokenizer, generation))):
        event["confidence"] = value
    return result


def find_answer(generation: Generation, query: str, tokenizer) -> dict:
    """The reference find dict, plus ``query``, ``truncated`` and the span's ``confidence``."""
    result = parse_find(generation.text)
    result["query"] = query
    result["truncated"] = generation.truncated
    span = result["span"]
    result["confidence"] = conf.range_confidences([span], _numbers(tokenizer, generation))[0] if span else None
    return result
