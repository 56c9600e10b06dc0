"""The inference engine: ``Marlin.caption`` / ``Marlin.find`` with the reference API, and faster variants.

Every answer comes from a real ``generate`` on the model followed by the contract's parser, so the
result dicts have exactly the reference helpers' shapes. On top of them:

* ``find_many`` encodes the video once and reuses the key/value cache of the shared prefix (the
  tokens up to ``<|vision_end|>``) for every query;
* ``caption_batch`` / ``find_batch`` put several videos in one left-padded ``generate`` call;
* ``iter_captions`` / ``iter_finds`` decode the next video in a background thread while the model
  works, and yield ``(video, result | exception)`` so one bad video never stops a batch;
* each event and span gets a ``confidence`` (see :mod:`marlin_core.confidence`) and each result a
  ``truncated`` flag when generation stopped at ``max_new_tokens``;
* videos longer than one window are captioned and searched window by window
  (:mod:`marlin_core.windows`) on one global timeline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import BatchFeature

from . import confidence as conf
from .contract import CAPTION_PROMPT, find_prompt, parse_caption, parse_find
from .inputs import chat_text, collate_inputs, prepare_inputs
from .loading import DEFAULT_MODEL, load_model_and_processor
from .prefetch import DEFAULT_DEPTH, prefetch
from .video import SamplingOptions, load_video, video_info
from .windows import WindowStore, merge_window_captions, merge_window_finds, plan_windows

VideoLike = str | Path
# The reference helpers' defaults (marlin-facts.md): captions may be long, a find answer is ~12 tokens.
CAPTION_MAX_NEW_TOKENS = 2048
FIND_MAX_NEW_TOKENS = 64
# Marlin sees at most 240 frames at 2 fps per call; longer videos are windowed.
DEFAULT_WINDOW_S = 120.0


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs of one call; greedy by default like the reference helpers."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass
class Generation:
    """One decoded answer: its text (special tokens skipped), per-token log-probs and cut-off flag."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    truncated: bool


class Marlin:
    """Marlin-2B (or a compatible Qwen3.5 video checkpoint) with caption / find helpers.

    Attributes:
        model: the loaded ``transformers`` model (public: pass it to your own code).
        processor: the matching ``AutoProcessor``.
        name_or_path: where the weights came from (hub id or folder).
        revision: the requested hub revision, if any.
    """

    def __init__(self, model, processor, *, name_or_path: str | None = None, revision: str | None = None):
        self.model = model
        self.processor = processor
        self.name_or_path = name_or_path or getattr(model, "name_or_path", None)
        self.revision = revision
        self._eos_ids = self._eos_token_ids()
        self.generate_calls = 0  # how many times generate ran (windows and batches show here)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        token: str | None = None,
    ) -> "Marlin":
        """Load from a hub id, a local folder or the offline cache.

        Picks CUDA + bfloat16 when available, else MPS + float16, else CPU + float32.
        ``token`` is a Hugging Face token for the gated model (default: the one ``hf auth login`` saved).

        Raises:
            ModelLoadError: with advice (log in for the gated model, or use a local folder).
        """
        model, processor, _ = load_model_and_processor(
            str(name_or_path),
            device=device,
            dtype=dtype,
            revision=revision,
            local_files_only=local_files_only,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            token=token,
        )
        return cls(model, processor, name_or_path=str(name_or_path), revision=revision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ inputs

    def prepare(self, video, prompt: str, **options):
        """Model inputs (``BatchFeature``) for one video and prompt, identical to the reference path.

        Args:
            video: a path, or a ``SampledVideo`` already decoded by :func:`marlin_core.video.load_video`.
            prompt: the user text after the video.
            **options: sampling options (``fps``, ``min_frames``, ``max_frames``, ``max_pixels``,
                ``video_start``, ``video_end`` in seconds); defaults are the reference behaviour.
        """
        return prepare_inputs(self.processor, video, prompt, **options)

    # ------------------------------------------------------------------ generation core

    def _eos_token_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.processor.tokenizer.eos_token_id
        return set(eos if isinstance(eos, (list, tuple)) else [eos])

    @torch.inference_mode()
    def _generate(self, inputs, settings: GenerationSettings, **extra) -> list[Generation]:
        """Run ``generate`` on a (possibly batched, left-padded) input and decode each row."""
        inputs = inputs.to(self.device)
        if "pixel_values_videos" in inputs:
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        self.generate_calls += 1
        output = self.model.generate(
            **inputs,
            **settings.generate_kwargs(),
            **extra,
            output_logits=True,
            return_dict_in_generate=True,
        )
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = output.sequences[:, prompt_len:]
        logprobs = conf.token_logprobs(output.logits, new_tokens).cpu()
        generations = []
        for row, row_lps in zip(new_tokens.tolist(), logprobs.tolist()):
            end = next((i for i, t in enumerate(row) if t in self._eos_ids), None)
            truncated = end is None and len(row) >= settings.max_new_tokens
            kept = row if end is None else row[:end]
            generations.append(self._decode(kept, row_lps[: len(kept)], truncated))
        return generations

    def _decode(self, token_ids: list[int], logprobs: list[float], truncated: bool) -> Generation:
        text = self.processor.tokenizer.decode(token_ids, skip_special_tokens=True)
        return Generation(text=text, token_ids=token_ids, logprobs=logprobs, truncated=truncated)

    def _numbers(self, generation: Generation):
        text, offsets = conf.char_offsets(self.processor.tokenizer, generation.token_ids)
        return conf.number_confidences(text, offsets, generation.logprobs)

    def _caption_result(self, generation: Generation) -> dict:
        result = parse_caption(generation.text, truncated=generation.truncated)
        ranges = [(event["start"], event["end"]) for event in result["events"]]
        for event, value in zip(result["events"], conf.range_confidences(ranges, self._numbers(generation))):
            event["confidence"] = value
        return result

    def _find_result(self, generation: Generation, query: str) -> dict:
        result = parse_find(generation.text)
        result["query"] = query
        result["truncated"] = generation.truncated
        span = result["span"]
        result["confidence"] = conf.range_confidences([span], self._numbers(generation))[0] if span else None
        return result

    # ------------------------------------------------------------------ windows

    def _windows(self, video, window_s: float | None, options: dict) -> list[tuple[float, float]] | None:
        """The windows of a long video, or None when it fits in one call (processed unwindowed)."""
        if window_s is None or options.get("video_start") is not None or options.get("video_end") is not None:
            return None
        if not isinstance(video, (str, Path)):
            return None  # already decoded (a SampledVideo): processed as loaded
        # Only the duration is needed here; a file that cannot be decoded fails when its frames are loaded.
        windows = plan_windows(video_info(video).duration_s, window_s=window_s)
        return windows if len(windows) > 1 else None

    def _per_window(self, video, windows, options, run: Callable[[dict], Any], progress=None,
                    store: WindowStore | None = None) -> list:
        """Run each window (window-local timestamps), skipping those ``store`` already holds."""
        done = {(float(a), float(b)): result for (a, b), result in (store.load() if store else {}).items()}
        results = []
        for index, (start_s, end_s) in enumerate(windows):
            result = done.get((start_s, end_s))
            if result is None:
                window_options = dict(options, video_start=start_s, video_end=end_s, timestamps="window")
                result = run(window_options)
                if store is not None:
                    store.save((start_s, end_s), result)
            results.append(((start_s, end_s), result))
            if progress is not None:
                progress(index + 1, len(windows))
        return results

    # ------------------------------------------------------------------ public API

    def caption(
        self,
        video: VideoLike,
        *,
        max_new_tokens: int = CAPTION_MAX_NEW_TOKENS,
        prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        window_s: float | None = DEFAULT_WINDOW_S,
        window_progress: Callable[[int, int], None] | None = None,
        window_store: WindowStore | None = None,
        **video_options,
    ) -> dict:
        """Describe a video: ``{"caption", "scene", "events": [{"start", "end", "description", "confidence"}]}``.

        Times are seconds from the start of the video. Extra keys: ``format_ok``, ``truncated`` (the
        answer hit ``max_new_tokens``) and, for videos longer than ``window_s``, ``windows``.

        Args:
            window_s: window length for long videos (None: never window).
            window_progress: called with ``(windows done, windows)`` after each window.
            window_store: keeps finished windows so an interrupted video resumes at the window level.
        """
        settings = GenerationSettings(max_new_tokens, do_sample, temperature, top_p)
        text = prompt or CAPTION_PROMPT

        def run(options: dict) -> dict:
            return self._caption_result(self._generate(self.prepare(video, text, **options), settings)[0])

        windows = self._windows(video, window_s, video_options)
        if windows is None:
            return run(video_options)
        return merge_window_captions(
            self._per_window(video, windows, video_options, run, window_progress, window_store)
        )

    def find(
        self,
        video: VideoLike,
        event: str,
        *,
        max_new_tokens: int = FIND_MAX_NEW_TOKENS,
        prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        window_s: float | None = DEFAULT_WINDOW_S,
        window_progress: Callable[[int, int], None] | None = None,
        window_store: WindowStore | None = None,
        **video_options,
    ) -> dict:
        """When does ``event`` happen: ``{"raw", "span": (start_s, end_s) | None, "format_ok", "confidence"}``."""
        return self.find_many(
            video,
            [event],
            max_new_tokens=max_new_tokens,
            prompt=prompt,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            window_s=window_s,
            window_progress=window_progress,
            window_store=window_store,
            **video_options,
        )[0]

    def find_many(
        self,
        video: VideoLike,
        events: Sequence[str],
        *,
        max_new_tokens: int = FIND_MAX_NEW_TOKENS,
        prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        window_s: float | None = DEFAULT_WINDOW_S,
        window_progress: Callable[[int, int], None] | None = None,
        window_store: WindowStore | None = None,
        **video_options,
    ) -> list[dict]:
        """``find`` for several queries on one video, decoding the video and encoding it once.

        The key/value cache of the prompt prefix shared by all queries (everything up to and
        including ``<|vision_end|>``: the video tokens, its timestamps and the vision encoder's
        output) is computed once and copied for each query, so a query costs only its own
        prefill and decoding. Results equal independent ``find`` calls (tested).

        Args:
            prompt: a template with ``{query}`` replacing the canonical find prompt.
        """
        settings = GenerationSettings(max_new_tokens, do_sample, temperature, top_p)
        prompts = [prompt.format(query=q) if prompt else find_prompt(q) for q in events]

        def run(options: dict) -> list[dict]:
            sampled = video if not isinstance(video, (str, Path)) else load_video(video, self._sampling(options))
            return self._find_with_shared_prefix(sampled, list(events), prompts, settings, options)

        windows = self._windows(video, window_s, video_options)
        if windows is None:
            return run(video_options)
        per_window = self._per_window(video, windows, video_options, run, window_progress, window_store)
        return [
            dict(merge_window_finds([(window, results[i]) for window, results in per_window]), query=query)
            for i, query in enumerate(events)
        ]

    def _sampling(self, options: dict) -> SamplingOptions:
        return SamplingOptions(**{k: v for k, v in options.items() if k != "timestamps"})

    def _find_with_shared_prefix(self, sampled, queries, prompts, settings, options) -> list[dict]:
        first = self.prepare(sampled, prompts[0], **options)
        if len(prompts) == 1 or settings.do_sample:
            inputs = [first] + [self.prepare(sampled, text, **options) for text in prompts[1:]]
            return [self._find_result(self._generate(i, settings)[0], q) for i, q in zip(inputs, queries)]
        prefix_len = self._prefix_length(first)
        cache = self._prefix_cache(first, prefix_len)
        results = []
        for text, query in zip(prompts, queries):
            inputs = self.query_inputs(first, prefix_len, sampled, text)
            generation = self._generate(inputs, settings, cache=copy.deepcopy(cache))[0]
            results.append(self._find_result(generation, query))
        return results

    def _prefix_length(self, inputs) -> int:
        """Tokens up to and including the last ``<|vision_end|>``: the part every query shares."""
        vision_end = self.processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
        return int((inputs["input_ids"][0] == vision_end).nonzero()[-1]) + 1

    def query_inputs(self, shared, prefix_len: int, sampled, prompt: str) -> BatchFeature:
        """Inputs for ``prompt`` on the video of ``shared`` without running the processor on the frames again.

        The shared prefix (video tokens and timestamps) is reused; only the text after
        ``<|vision_end|>`` is tokenized (a special token, so BPE never merges across it). The
        result equals ``prepare(sampled, prompt)`` minus ``pixel_values_videos`` (tested).
        """
        text = chat_text(self.processor, sampled.path, prompt, sampled.options)
        suffix = text.split("<|vision_end|>", 1)[1]
        suffix_ids = self.processor.tokenizer(suffix, add_special_tokens=False, return_tensors="pt")["input_ids"]
        input_ids = torch.cat([shared["input_ids"][:, :prefix_len], suffix_ids], dim=1)
        mm_types = torch.cat([shared["mm_token_type_ids"][:, :prefix_len], torch.zeros_like(suffix_ids)], dim=1)
        return BatchFeature({
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": mm_types,
            "video_grid_thw": shared["video_grid_thw"],
        })

    @torch.inference_mode()
    def _prefix_cache(self, inputs, prefix_len: int):
        """Run the model (vision encoder included) on the shared prefix; return its key/value cache."""
        prefix = {
            "input_ids": inputs["input_ids"][:, :prefix_len],
            "attention_mask": inputs["attention_mask"][:, :prefix_len],
            "mm_token_type_ids": inputs["mm_token_type_ids"][:, :prefix_len],
            "pixel_values_videos": inputs["pixel_values_videos"].to(self.model.dtype),
            "video_grid_thw": inputs["video_grid_thw"],
        }
        prefix = {k: v.to(self.device) for k, v in prefix.items()}
        return self.model(**prefix, use_cache=True).past_key_values

    def caption_batch(
        self,
        videos: Sequence[VideoLike],
        *,
        batch_size: int = 4,
        max_new_tokens: int = CAPTION_MAX_NEW_TOKENS,
        prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        **video_options,
    ) -> list[dict]:
        """Caption several videos, ``batch_size`` per ``generate`` call (left padding).

        Under greedy decoding the results equal one-at-a-time ``caption`` calls (tested).
        Raises the first video error; use :meth:`iter_captions` to get errors per video instead.
        """
        results = []
        for _, result in self.iter_captions(
            videos,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            prompt=prompt,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            **video_options,
        ):
            if isinstance(result, BaseException):
                raise result
            results.append(result)
        return results

    def find_batch(
        self,
        pairs: Sequence[tuple[VideoLike, str]],
        *,
        batch_size: int = 4,
        max_new_tokens: int = FIND_MAX_NEW_TOKENS,
        prompt: str | None = None,
        **video_options,
    ) -> list[dict]:
        """``find`` for ``(video, query)`` pairs, ``batch_size`` pairs per ``generate`` call."""
        settings = GenerationSettings(max_new_tokens)
        results: list[dict] = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            texts = [prompt.format(query=q) if prompt else find_prompt(q) for _, q in chunk]
            batch = collate_inputs(
                [self.prepare(v, t, **video_options) for (v, _), t in zip(chunk, texts)],
                self.processor.tokenizer.pad_token_id,
            )
            for (_, query), generation in zip(chunk, self._generate(batch, settings)):
                results.append(self._find_result(generation, query))
        return results

    def iter_captions(
        self,
        videos: Iterable[VideoLike],
        *,
        batch_size: int = 1,
        prefetch_depth: int | None = None,
        max_new_tokens: int = CAPTION_MAX_NEW_TOKENS,
        prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        window_s: float | None = DEFAULT_WINDOW_S,
        window_progress: Callable[[VideoLike, int, int], None] | None = None,
        window_store: Callable[[VideoLike], WindowStore | None] | None = None,
        **video_options,
    ) -> Iterator[tuple[VideoLike, dict | BaseException]]:
        """Yield ``(video, result or exception)`` in order, decoding ahead while the model runs.

        Videos that fit in one window go ``batch_size`` per ``generate`` call; longer ones are
        captioned window by window, with ``window_progress(video, done, total)`` after each window
        and ``window_store(video)`` keeping finished windows for a resumed run. ``prefetch_depth``
        videos are decoded ahead in a thread; None = 1 when the model is on an accelerator, 0 on the
        CPU, where decoding and the model compete for the same cores (bench/engine.py: 1.2-1.3x slower
        with prefetch on 2 cores).
        """
        settings = GenerationSettings(max_new_tokens, do_sample, temperature, top_p)
        text = prompt or CAPTION_PROMPT
        sampling = self._sampling(video_options)

        def load(video):
            if self._windows(video, window_s, video_options) is not None:
                return None  # decoded window by window by caption()
            return load_video(video, sampling)

        def caption_windowed(video):
            return self.caption(
                video, max_new_tokens=max_new_tokens, prompt=prompt, do_sample=do_sample, temperature=temperature,
                top_p=top_p, window_s=window_s, window_store=window_store(video) if window_store else None,
                window_progress=(lambda done, total: window_progress(video, done, total)) if window_progress else None,
                **video_options,
            )

        def caption_batch(pending):
            batch = collate_inputs([self.prepare(sampled, text, **video_options) for _, sampled in pending],
                                   self.processor.tokenizer.pad_token_id)
            return [self._caption_result(g) for g in self._generate(batch, settings)]

        pending: list[tuple[VideoLike, Any]] = []

        def flush():
            outcome = self._safe(lambda: caption_batch(pending))
            outcomes = outcome if isinstance(outcome, list) else [outcome] * len(pending)
            done = [(video, result) for (video, _), result in zip(pending, outcomes)]
            pending.clear()
            return done

        for video, loaded in prefetch(videos, load, depth=self._prefetch_depth(prefetch_depth)):
            if isinstance(loaded, BaseException) or loaded is None:
                yield from flush()
                yield video, loaded if loaded is not None else self._safe(lambda: caption_windowed(video))
                continue
            pending.append((video, loaded))
            if len(pending) >= batch_size:
                yield from flush()
        yield from flush()

    def iter_finds(
        self,
        items: Iterable[tuple[VideoLike, Sequence[str]]],
        *,
        prefetch_depth: int | None = None,
        max_new_tokens: int = FIND_MAX_NEW_TOKENS,
        prompt: str | None = None,
        window_s: float | None = DEFAULT_WINDOW_S,
        window_progress: Callable[[VideoLike, int, int], None] | None = None,
        window_store: Callable[[VideoLike], WindowStore | None] | None = None,
        **video_options,
    ) -> Iterator[tuple[VideoLike, list[dict] | BaseException]]:
        """Yield ``(video, [result per query] or exception)`` for ``(video, queries)`` items, in order.

        Each video is decoded once (ahead, in a background thread on an accelerator; see
        ``iter_captions`` for ``prefetch_depth``) and encoded once for all its queries.
        """
        sampling = self._sampling(video_options)

        def load(item):
            video = item[0]
            if self._windows(video, window_s, video_options) is not None:
                return video  # decoded window by window by find_many()
            return load_video(video, sampling)

        for (video, queries), loaded in prefetch(items, load, depth=self._prefetch_depth(prefetch_depth)):
            if isinstance(loaded, BaseException):
                yield video, loaded
                continue
            yield video, self._safe(lambda: self.find_many(
                loaded, queries, max_new_tokens=max_new_tokens, prompt=prompt, window_s=window_s,
                window_store=window_store(video) if window_store else None,
                window_progress=(lambda done, total: window_progress(video, done, total)) if window_progress else None,
                **video_options))

    def _prefetch_depth(self, requested: int | None) -> int:
        if requested is not None:
            return requested
        return 0 if self.device.type == "cpu" else DEFAULT_DEPTH

    @staticmethod
    def _safe(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - reported per video, the batch goes on
            return error
