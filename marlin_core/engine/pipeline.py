"""Requests over many videos: windows for long ones, decoding ahead, batches, and one result or error per item.

Work comes as :class:`WorkItem` s (a caller's key, a video, the find queries) and results go out as
``(key, result | exception)`` in input order, so a caller keys by what it means (a FiftyOne sample id: two
samples may share one file) and one bad video never stops the others. Window callbacks get the key too.

How the GPU is kept busy (issue 16): the next videos are decoded *and* run through the processor in a
background thread while the model works (``prefetch_depth``, default: as many as a batch holds on an
accelerator, none on the CPU where both compete for the same cores); videos that fit in one window are
grouped, sorted by prompt length so a batch's rows need little padding, run ``batch_size`` per ``generate``
call, and handed back in input order. ``batch_size=None`` ("auto") is one on the CPU and, on CUDA, as many
as the free GPU memory holds for the group's longest prompt (:func:`auto_batch_size`).

When batched answers can differ from one-at-a-time ones: rows are left-padded, and a padded row's
attention and gated-delta-net kernels add the same values in another blocking, so in bfloat16 a near tie
between two tokens can flip (float32 on the CPU: equal, tested). Greedy one-at-a-time answers are the
plain ``generate``'s tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import BatchFeature

from ..contract import CAPTION_PROMPT, find_prompt
from ..defaults import CAPTION_MAX_NEW_TOKENS, DEFAULT_WINDOW_S, FIND_MAX_NEW_TOKENS
from .generation import GenerationSettings, Generator, caption_answer, find_answer
from .inputs import TIMESTAMPS_VIDEO, TIMESTAMPS_WINDOW, collate_inputs, prepare_inputs
from ..prefetch import prefetch
from ..video import SampledVideo, SamplingOptions, load_video, video_info
from ..windows import WindowStore, merge_window_captions, merge_window_finds, plan_windows

__all__ = [
    "AUTO_MAX_BATCH",
    "CAPTION",
    "FIND",
    "PEAK_BYTES_PER_TOKEN",
    "Pipeline",
    "Request",
    "WorkItem",
    "auto_batch_size",
]

CAPTION, FIND = "caption", "find"
# Most videos in one ``generate`` call when the batch size is picked automatically; also how many are decoded
# ahead then (each holds its frames in the model's dtype: ~0.3 GiB for a full 2-minute window in bfloat16).
AUTO_MAX_BATCH = 8
# GPU memory one video needs per token of prompt + answer, beyond the weights: the KV cache of the full-attention
# layers plus the prefill's activations (vision tower, MLPs, gated-delta-net chunks). From issue 16's H100 run of
# the Qwen3.5-2B shape (bfloat16, PyTorch fallback kernels): batch 4 -> 8 added 9.1 GiB for 4 x 14,920 tokens,
# minus the ~0.25 GiB per video of stored logits that run still had = 144 KiB; rounded up.
PEAK_BYTES_PER_TOKEN = 160 * 1024
# Share of the free GPU memory the automatic batch size may plan to use (the rest: allocator fragmentation).
AUTO_MEMORY_SHARE = 0.8
# Groups of this many batches are sorted by prompt length before they are cut into batches (accelerators).
SORT_BATCHES = 2

VideoLike = str | Path | SampledVideo


@dataclass(frozen=True)
class WorkItem:
    """One video to answer, under the caller's key.

    Attributes:
        key: what results and window callbacks are reported under (e.g. a sample id); any hashable value.
        video: a path, or a :class:`SampledVideo` already decoded (processed as loaded, never windowed).
        queries: the find queries (empty for a caption).
    """

    key: Hashable
    video: VideoLike
    queries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """Everything that decides the answer of every video in a call, built once per call.

    Attributes:
        kind: :data:`CAPTION` or :data:`FIND`.
        generation: decoding settings.
        prompt: the caption prompt, or a find template with ``{query}`` (None: the canonical prompt).
        window_s: window length in seconds for long videos (None: never window).
        sampling: video sampling options (None: the reference defaults).
    """

    kind: str
    generation: GenerationSettings
    prompt: str | None = None
    window_s: float | None = DEFAULT_WINDOW_S
    sampling: SamplingOptions | None = None

    @classmethod
    def build(
        cls,
        kind: str,
        *,
        max_new_tokens: int | None = None,
        prompt: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        window_s: float | None = DEFAULT_WINDOW_S,
        **video_options: Any,
    ) -> "Request":
        """A request from the public keyword arguments.

        Args:
            kind: :data:`CAPTION` or :data:`FIND`.
            max_new_tokens: generation cap (None: 2048 for a caption, 64 for a find, as the reference).
            prompt: see the class attributes.
            do_sample, temperature, top_p: decoding (greedy by default).
            window_s: see the class attributes.
            **video_options: :class:`SamplingOptions` fields (``fps``, ``min_frames``, ``max_frames``,
                ``max_pixels``, ``min_pixels``, ``video_start``, ``video_end`` in seconds, ``model_seq_len``).
        """
        if kind not in (CAPTION, FIND):
            raise ValueError(f"kind={kind!r}: use {CAPTION!r} or {FIND!r}")
        if max_new_tokens is None:
            max_new_tokens = CAPTION_MAX_NEW_TOKENS if kind == CAPTION else FIND_MAX_NEW_TOKENS
        generation = GenerationSettings(max_new_tokens, do_sample, temperature, top_p)
        sampling = SamplingOptions(**video_options) if video_options else None
        return cls(kind, generation, prompt, window_s, sampling)

    def prompts(self, queries: Sequence[str]) -> list[str]:
        """The user text of each generation for one video: the caption prompt, or one find prompt per query."""
        if self.kind == CAPTION:
            return [self.prompt or CAPTION_PROMPT]
        if not queries:
            raise ValueError("find needs at least one query")
        return [self.prompt.format(query=q) if self.prompt else find_prompt(q) for q in queries]

    def windows(self, video: VideoLike) -> list[tuple[float, float]] | None:
        """The windows of a long video, or None when it is answered in one call (unwindowed)."""
        options = self.sampling or SamplingOptions()
        if self.window_s is None or options.video_start is not None or options.video_end is not None:
            return None
        if isinstance(video, SampledVideo):
            return None
        # Only the duration is needed here; a file that cannot be decoded fails when its frames are loaded.
        windows = plan_windows(video_info(video).duration_s, window_s=self.window_s)
        return windows if len(windows) > 1 else None


def auto_batch_size(
    free_bytes: int,
    prompt_tokens: int,
    new_tokens: int,
    *,
    bytes_per_token: int = PEAK_BYTES_PER_TOKEN,
    max_batch: int = AUTO_MAX_BATCH,
) -> int:
    """How many videos of ``prompt_tokens`` (+ ``new_tokens``) fit in ``free_bytes`` of GPU memory at once.

    Args:
        free_bytes: GPU memory free for this work (weights already loaded), in bytes.
        prompt_tokens: the longest prompt of the batch, in tokens.
        new_tokens: the generation cap, in tokens.
        bytes_per_token: peak memory per token of one video (see :data:`PEAK_BYTES_PER_TOKEN`).
        max_batch: upper bound.

    Returns:
        An integer in ``[1, max_batch]`` (1 when even one video does not fit: it then runs alone).
    """
    per_video = max(1, (prompt_tokens + new_tokens) * bytes_per_token)
    return max(1, min(max_batch, int(free_bytes * AUTO_MEMORY_SHARE) // per_video))


def free_gpu_bytes(device: torch.device) -> int:
    """Memory a new batch can use on a CUDA device: the driver's free memory plus PyTorch's cached blocks."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


@dataclass
class _Loaded:
    """A video decoded and prepared ahead (for the first prompt), or None for one answered window by window."""

    sampled: SampledVideo | None
    inputs: BatchFeature | None

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1]) if self.inputs is not None else 0


class Pipeline:
    """Runs requests over videos with a :class:`Generator`."""

    def __init__(self, generator: Generator):
        self.generator = generator

    # ------------------------------------------------------------------ one video

    def answer(
        self,
        item: WorkItem,
        request: Request,
        progress: Callable[[int, int], None] | None = None,
        store: WindowStore | None = None,
    ) -> Any:
        """The result of one item: a caption dict, or a list of find dicts (one per query, in order).

        Long videos are answered window by window (window-local timestamps) and merged on the video's
        timeline; ``progress(done, total)`` is called after each window and ``store`` keeps finished
        windows so an interrupted video resumes at the window level.
        """
        windows = request.windows(item.video)
        if windows is None:
            return self._answer_loaded(self._load(item, request, check_windows=False), item.queries, request)
        done = {(float(a), float(b)): result for (a, b), result in (store.load() if store else {}).items()}
        per_window = []
        for index, window in enumerate(windows):
            result = done.get(window)
            if result is None:
                options = (request.sampling or SamplingOptions()).with_overrides(video_start=window[0],
                                                                                 video_end=window[1])
                loaded = self._prepare(load_video(item.video, options), item.queries, request, TIMESTAMPS_WINDOW)
                result = self._answer_loaded(loaded, item.queries, request)
                if store is not None:
                    store.save(window, result)
            per_window.append((window, result))
            if progress is not None:
                progress(index + 1, len(windows))
        if request.kind == CAPTION:
            return merge_window_captions(per_window)
        return [
            dict(merge_window_finds([(window, results[i]) for window, results in per_window]), query=query)
            for i, query in enumerate(item.queries)
        ]

    def _load(self, item: WorkItem, request: Request, check_windows: bool = True) -> _Loaded:
        """Decode and prepare one item that fits in one window (runs in the prefetch thread).

        Returns an empty :class:`_Loaded` for a long video (``check_windows``): it is decoded window by window.
        """
        if check_windows and request.windows(item.video) is not None:
            return _Loaded(None, None)
        if isinstance(item.video, SampledVideo):
            return self._prepare(item.video, item.queries, request, TIMESTAMPS_VIDEO, check=request.sampling)
        return self._prepare(load_video(item.video, request.sampling), item.queries, request, TIMESTAMPS_VIDEO)

    def _prepare(self, sampled: SampledVideo, queries, request: Request, timestamps: str,
                 check: SamplingOptions | None = None) -> _Loaded:
        inputs = prepare_inputs(self.generator.processor, sampled, request.prompts(queries)[0], check,
                                timestamps=timestamps, dtype=self.generator.model.dtype)
        return _Loaded(sampled, self.generator.cast_pixels(inputs))

    def _answer_loaded(self, loaded: _Loaded, queries, request: Request) -> Any:
        generator, tokenizer = self.generator, self.generator.tokenizer
        if request.kind == CAPTION:
            return caption_answer(generator.generate(loaded.inputs, request.generation)[0], tokenizer)
        generations = generator.generate_queries(loaded.inputs, loaded.sampled, request.prompts(queries),
                                                 request.generation)
        return [find_answer(g, q, tokenizer) for g, q in zip(generations, queries)]

    # ------------------------------------------------------------------ many videos

    def iterate(
        self,
        items: Iterable[WorkItem],
        request: Request,
        *,
        batch_size: int | str | None = None,
        prefetch_depth: int | None = None,
        window_progress: Callable[[Hashable, int, int], None] | None = None,
        window_store: Callable[[Hashable], WindowStore | None] | None = None,
    ) -> Iterator[tuple[Hashable, Any]]:
        """Yield ``(key, result or exception)`` for each item, in input order.

        Args:
            items: the work; consumed lazily.
            request: what to ask of every video.
            batch_size: videos per ``generate`` call for single-prompt items that fit in one window; None or
                ``"auto"``: 1 on the CPU, :func:`auto_batch_size` on CUDA.
            prefetch_depth: items decoded and prepared ahead in a background thread; None: 0 on the CPU,
                else the batch size (:data:`AUTO_MAX_BATCH` when automatic).
            window_progress: ``(key, windows done, windows)`` after each window of a long video.
            window_store: ``key -> WindowStore`` keeping finished windows for a resumed run.
        """
        device = self.generator.device
        fixed = _fixed_batch_size(batch_size, device)
        depth = prefetch_depth
        if depth is None:
            depth = 0 if device.type == "cpu" else fixed or AUTO_MAX_BATCH
        sort_batches = 1 if device.type == "cpu" else SORT_BATCHES
        pending: list[tuple[WorkItem, _Loaded]] = []
        target = 0

        for item, loaded in prefetch(items, lambda item: self._load(item, request), depth=depth):
            batchable = isinstance(loaded, _Loaded) and loaded.inputs is not None and (
                request.kind == CAPTION or len(item.queries) == 1)
            if not batchable:
                yield from self._run_group(pending, request, target // sort_batches or 1)
                pending = []
                yield item.key, self._answer_one(item, loaded, request, window_progress, window_store)
                continue
            if not pending:
                batch = fixed or auto_batch_size(free_gpu_bytes(device), loaded.prompt_tokens,
                                                 request.generation.max_new_tokens)
                target = batch * sort_batches
            pending.append((item, loaded))
            if len(pending) >= target:
                yield from self._run_group(pending, request, target // sort_batches)
                pending = []
        yield from self._run_group(pending, request, target // sort_batches or 1)

    def _answer_one(self, item, loaded, request, window_progress, window_store) -> Any:
        if isinstance(loaded, BaseException):
            return loaded
        try:
            if loaded.inputs is None:  # a long video: decoded and answered window by window
                progress = (lambda done, total: window_progress(item.key, done, total)) if window_progress else None
                return self.answer(item, request, progress, window_store(item.key) if window_store else None)
            return self._answer_loaded(loaded, item.queries, request)
        except Exception as error:  # noqa: BLE001 - reported per item, the others go on
            return error

    def _run_group(self, pending: list[tuple[WorkItem, _Loaded]], request: Request, batch: int):
        """Answer a group sorted by prompt length, ``batch`` per call; yield the results in input order."""
        order = sorted(range(len(pending)), key=lambda i: pending[i][1].prompt_tokens)
        results: dict[int, Any] = {}
        for start in range(0, len(order), batch):
            chunk = order[start: start + batch]
            outcomes = self._run_batch([pending[i] for i in chunk], request)
            results.update(zip(chunk, outcomes))
        for index, (item, _) in enumerate(pending):
            yield item.key, results[index]

    def _run_batch(self, chunk: list[tuple[WorkItem, _Loaded]], request: Request) -> list[Any]:
        """One ``generate`` call for the chunk; if it fails, each item alone (so one bad input fails alone)."""
        generator = self.generator
        try:
            batch = collate_inputs([loaded.inputs for _, loaded in chunk], generator.tokenizer.pad_token_id)
            generations = generator.generate(batch, request.generation)
        except Exception as error:  # noqa: BLE001 - reported per item, the others go on
            if len(chunk) == 1:
                return [error]
            return [outcome for pair in chunk for outcome in self._run_batch([pair], request)]
        if request.kind == CAPTION:
            return [caption_answer(g, generator.tokenizer) for g in generations]
        return [[find_answer(g, item.queries[0], generator.tokenizer)] for g, (item, _) in zip(generations, chunk)]


def _fixed_batch_size(batch_size: int | str | None, device: torch.device) -> int | None:
    """The batch size when it is given or the device is not CUDA; None when it is picked per group."""
    if batch_size is None or batch_size == "auto":
        return None if device.type == "cuda" else 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: use an integer >= 1, or None / 'auto'")
    return batch_size
