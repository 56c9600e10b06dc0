"""The inference engine: ``Marlin.caption`` / ``Marlin.find`` with the reference API, and faster variants.

``Marlin`` is a façade: :mod:`marlin_core.engine.generation` decodes answers (the engine's decode loop over the
model's own layers, :mod:`marlin_core.engine.loop`, or plain ``generate`` with ``decode="generate"``: greedy
tokens equal a plain ``generate`` on the same inputs; confidence recorded on the fly),
:mod:`marlin_core.engine.pipeline` runs requests over videos (windows for long ones, decoding ahead, batches, one
result or error per item). Every answer is the model's decoding followed by the contract's parser, so the result
dicts have the reference helpers' shapes, plus a ``confidence`` per time range and a ``truncated`` flag.

Keyword settings, the same for every method (see :meth:`marlin_core.engine.pipeline.Request.build`):
``max_new_tokens`` (2048 caption / 64 find), ``prompt``, ``do_sample``, ``temperature``, ``top_p``,
``window_s`` (120 s; None: never window) and the video sampling options (``fps``, ``max_pixels``,
``video_start``, ``video_end``, ...).

Peak memory (GPU, or host RAM on the CPU) of one ``generate`` call over ``B`` videos of ``P`` prompt tokens
and up to ``N`` new tokens, vocabulary ``V``:

    weights                                   (Marlin-2B in bfloat16: ~4.5 GiB)
  + B x (P + N) x KV bytes per token          (full-attention layers only: 2 x 6 layers x 2 KV heads x 256 x 2 B
                                               = 12 KiB/token for the 2B shape)
  + B x linear-attention state                (constant per video: conv + recurrent state of 18 layers, ~MiB)
  + B x P x prefill activations per token     (transient: vision tower, MLPs, gated-delta-net chunks; the
                                               largest term, ~150 KiB/token measured on an H100 with the
                                               PyTorch fallback kernels)
  + B x V x 4 bytes x ~5                      (one step's logits: the head's output, generate's float32 copy,
                                               the confidence recorder's log-softmax, temporaries: ~5 MiB per
                                               video at V = 248,320, measured on the CPU by tests/test_memory.py)

Nothing is proportional to ``N x V``: confidences keep one float per generated token, never a step's
logits (tests/test_memory.py measures it); ``find_many``'s shared prefix runs the language-model head on
one position (``logits_to_keep=1``), so it costs one find, not ``prefix x V`` logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..defaults import DEFAULT_MODEL
from .generation import Generator
from .inputs import prepare_inputs
from .kernels import kernel_report
from .loading import load_model_and_processor
from .pipeline import CAPTION, FIND, Pipeline, Request, WorkItem
from ..video import SampledVideo
from ..windows import WindowStore

__all__ = ["Marlin", "WorkItem"]

logger = logging.getLogger(__name__)
VideoLike = str | Path | SampledVideo
WindowProgress = Callable[[Hashable, int, int], None]
WindowStores = Callable[[Hashable], WindowStore | None]


class Marlin:
    """Marlin-2B (or a compatible Qwen3.5 video checkpoint) with caption / find helpers.

    Attributes:
        model: the loaded ``transformers`` model (public: pass it to your own code).
        processor: the matching ``AutoProcessor``.
        name_or_path: where the weights came from (hub id or folder).
        revision: the requested hub revision, if any.
        generator: runs ``generate`` (:class:`marlin_core.engine.generation.Generator`).
        pipeline: runs requests over videos (:class:`marlin_core.engine.pipeline.Pipeline`).
    """

    def __init__(self, model, processor, *, name_or_path: str | None = None, revision: str | None = None,
                 decode: str | None = None):
        self.model = model
        self.processor = processor
        self.name_or_path = name_or_path or getattr(model, "name_or_path", None)
        self.revision = revision
        self.generator = Generator(model, processor, decode=decode)
        self.pipeline = Pipeline(self.generator)
        logger.info("Marlin on %s (%s), kernels: %s", self.device, model.dtype, self.kernels())

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, *, revision: str | None = None,
                        decode: str | None = None, **load_options: Any) -> "Marlin":
        """Load from a hub id, a local folder or the offline cache.

        Picks CUDA + bfloat16 when available, else MPS + float16, else CPU + float32. ``load_options``:
        ``device``, ``dtype``, ``local_files_only``, ``attn_implementation``, ``trust_remote_code`` and
        ``token`` (a Hugging Face token for the gated model; default: the one ``hf auth login`` saved).
        ``decode``: ``"auto"`` (this project's decode loop, CUDA graphs on CUDA), ``"eager"`` or ``"generate"``
        (plain ``model.generate``); default ``$MARLIN_DECODE`` or ``"auto"`` (:mod:`marlin_core.engine.loop`).

        Raises:
            ModelLoadError: with advice (log in for the gated model, or use a local folder).
        """
        model, processor, _ = load_model_and_processor(str(name_or_path), revision=revision, **load_options)
        return cls(model, processor, name_or_path=str(name_or_path), revision=revision, decode=decode)

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def kernels(self) -> dict[str, str]:
        """Which implementation runs each hot spot (see :func:`marlin_core.engine.kernels.kernel_report`), and
        ``decode``: what runs the decode steps (the loop, eager or in CUDA graphs, or plain ``generate``)."""
        return dict(kernel_report(self.model), decode=self.generator.decode_report())

    def prepare(self, video: VideoLike, prompt: str, **options):
        """Model inputs (``BatchFeature``) for one video and prompt, identical to the reference path's.

        Args:
            video: a path, or a ``SampledVideo`` already decoded by :func:`marlin_core.video.load_video`.
            prompt: the user text after the video.
            **options: sampling options (``fps``, ``min_frames``, ``max_frames``, ``max_pixels``,
                ``video_start``, ``video_end`` in seconds); defaults are the reference behaviour.
        """
        return prepare_inputs(self.processor, video, prompt, **options)

    # ------------------------------------------------------------------ one video

    def caption(self, video: VideoLike, *, window_progress: Callable[[int, int], None] | None = None,
                window_store: WindowStore | None = None, **settings) -> dict:
        """Describe a video: ``{"caption", "scene", "events": [{"start", "end", "description", "confidence"}]}``.

        Times are seconds from the start of the video. Extra keys: ``format_ok``, ``truncated`` (the
        answer hit ``max_new_tokens``) and, for videos longer than ``window_s``, ``windows``.

        Args:
            window_progress: called with ``(windows done, windows)`` after each window of a long video.
            window_store: keeps finished windows so an interrupted video resumes at the window level.
            **settings: see the module docstring.
        """
        item = WorkItem(video, video)
        return self.pipeline.answer(item, Request.build(CAPTION, **settings), window_progress, window_store)

    def find(self, video: VideoLike, event: str, **options) -> dict:
        """When does ``event`` happen: ``{"raw", "span": (start_s, end_s) | None, "format_ok", "confidence"}``.

        Takes the keyword arguments of :meth:`find_many`.
        """
        return self.find_many(video, [event], **options)[0]

    def find_many(self, video: VideoLike, events: Sequence[str], *,
                  window_progress: Callable[[int, int], None] | None = None,
                  window_store: WindowStore | None = None, **settings) -> list[dict]:
        """``find`` for several queries on one video, decoding the video and encoding it once.

        The key/value cache of the prompt prefix shared by all queries is computed once and copied for
        each query (:meth:`marlin_core.engine.generation.Generator.generate_queries`); results equal independent
        ``find`` calls (tested). ``prompt`` is a template with ``{query}``.
        """
        item = WorkItem(video, video, tuple(events))
        return self.pipeline.answer(item, Request.build(FIND, **settings), window_progress, window_store)

    # ------------------------------------------------------------------ many videos

    def caption_batch(self, videos: Sequence[VideoLike], *, batch_size: int | str | None = 4, **settings) -> list[dict]:
        """Caption several videos, ``batch_size`` per ``generate`` call (left padding).

        Under greedy decoding in float32 the results equal one-at-a-time ``caption`` calls (tested).
        Raises the first video error; use :meth:`iter_captions` to get errors per video instead.
        """
        return _raise_first([r for _, r in self.iter_captions(videos, batch_size=batch_size, **settings)])

    def find_batch(self, pairs: Sequence[tuple[VideoLike, str]], *, batch_size: int | str | None = 4,
                   **settings) -> list[dict]:
        """``find`` for ``(video, query)`` pairs, ``batch_size`` pairs per ``generate`` call; long videos windowed."""
        items = [WorkItem(index, video, (query,)) for index, (video, query) in enumerate(pairs)]
        results = self.pipeline.iterate(items, Request.build(FIND, **settings), batch_size=batch_size)
        return [answers[0] for answers in _raise_first([r for _, r in results])]

    def iter_captions(self, videos: Iterable[VideoLike | WorkItem], *, batch_size: int | str | None = None,
                      prefetch_depth: int | None = None, window_progress: WindowProgress | None = None,
                      window_store: WindowStores | None = None, **settings) -> Iterator[tuple[Hashable, Any]]:
        """Yield ``(key, result or exception)`` in input order, decoding ahead while the model runs.

        Args:
            videos: paths (the key is the path as given) or :class:`WorkItem` s (the key is theirs).
            batch_size: videos per ``generate`` call; None/``"auto"``: 1 on the CPU, picked from free GPU
                memory on CUDA (:func:`marlin_core.engine.pipeline.auto_batch_size`).
            prefetch_depth: videos decoded ahead (None: none on the CPU, a batch on an accelerator).
            window_progress: ``(key, windows done, windows)`` after each window of a long video.
            window_store: ``key -> WindowStore`` keeping finished windows for a resumed run.
            **settings: see the module docstring.
        """
        items = (v if isinstance(v, WorkItem) else WorkItem(v, v) for v in videos)
        return self.pipeline.iterate(items, Request.build(CAPTION, **settings), batch_size=batch_size,
                                     prefetch_depth=prefetch_depth, window_progress=window_progress,
                                     window_store=window_store)

    def iter_finds(self, items: Iterable[tuple[VideoLike, Sequence[str]] | WorkItem], *,
                   batch_size: int | str | None = None, prefetch_depth: int | None = None,
                   window_progress: WindowProgress | None = None, window_store: WindowStores | None = None,
                   **settings) -> Iterator[tuple[Hashable, Any]]:
        """Yield ``(key, [result per query] or exception)`` for each item, in input order.

        Items are ``(video, queries)`` pairs (the key is the video as given) or :class:`WorkItem` s with
        ``queries``. Each video is decoded once and encoded once for all its queries; items with one
        query that fit in one window are batched like captions. Other arguments as :meth:`iter_captions`.
        """
        work = (i if isinstance(i, WorkItem) else WorkItem(i[0], i[0], tuple(i[1])) for i in items)
        return self.pipeline.iterate(work, Request.build(FIND, **settings), batch_size=batch_size,
                                     prefetch_depth=prefetch_depth, window_progress=window_progress,
                                     window_store=window_store)


def _raise_first(results: list) -> list:
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
