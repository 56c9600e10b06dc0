"""``RemoteMarlin``: Marlin answered by an OpenAI-compatible server (vLLM) instead of local weights.

Same public methods and result dicts as :class:`marlin_core.engine.Marlin` (``caption``, ``find``,
``find_many``, ``caption_batch``, ``find_batch``, ``iter_captions``, ``iter_finds``), so the CLI and
the operators use either one. What stays identical: the prompts (:mod:`marlin_core.contract`), the
frames (sampled and resized here the reference way, see :mod:`marlin_core.serving.chat_request`), parsing,
confidence from the returned log-probs, and windows for long videos. What differs: up to
``max_concurrent`` requests are in flight at once (videos decode here while the server works), and
transient server failures are retried with backoff (:mod:`marlin_core.serving.openai_http`).

Start a server that accepts the frames' timing and keeps them unresized (README "Scaling out")::

    python -m vllm.entrypoints.openai.api_server --model ./Marlin-2B --served-model-name marlin \\
        --hf-overrides '{"architectures":["Qwen3_5ForConditionalGeneration"]}' --trust-request-mm-kwargs

then ``RemoteMarlin.from_url("openai://127.0.0.1:8000/v1/marlin")``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chat_request
from ..contract import CAPTION_PROMPT, find_prompt
from ..defaults import CAPTION_MAX_NEW_TOKENS, DEFAULT_WINDOW_S, FIND_MAX_NEW_TOKENS
from ..errors import MarlinError
from .openai_http import (DEFAULT_TIMEOUT_S, RetryPolicy, ServerEndpoint, get_json, malformed,
                          parse_server_model, post_json)
from ..engine.pipeline import WorkItem
from ..video import SampledVideo, SamplingOptions, load_video, video_info
from ..windows import WindowStore, merge_window_captions, merge_window_finds, plan_windows

__all__ = ["RemoteMarlin", "ServerSettings"]

VideoLike = str | Path


@dataclass(frozen=True)
class ServerSettings:
    """How the client talks to the server.

    Attributes:
        max_concurrent: videos (and queries of one video) in flight at once.
        timeout_s: how long one request may wait for its answer, in seconds (not retried: see openai_http).
        retry: how transient failures are retried.
        frame_format: ``"png"`` (lossless, default) or ``"jpeg"`` (smaller requests, see chat_request).
    """

    max_concurrent: int = 4
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    frame_format: str = "png"


@dataclass(frozen=True)
class _Decoding:
    """The decoding knobs of one call (greedy by default, like the engine)."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


class RemoteMarlin:
    """Marlin over HTTP. ``name_or_path`` is the ``openai://host:port/v1/<model>`` string it was made from."""

    def __init__(self, endpoint: ServerEndpoint, *, api_key: str | None = None,
                 settings: ServerSettings | None = None, name_or_path: str | None = None):
        self.endpoint = endpoint
        self.api_key = api_key
        self.settings = settings or ServerSettings()
        self.name_or_path = name_or_path or f"{endpoint.base_url}/{endpoint.model}"
        self.revision = None
        self.lease = None  # a managed vLLM server's lease (vllm: models), released by close()

    def close(self) -> None:
        """Stop using a managed server (the last user stops a server a run started); no-op otherwise."""
        if self.lease is not None:
            self.lease.release()

    def __enter__(self) -> "RemoteMarlin":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    @classmethod
    def from_url(cls, model: str, *, api_key: str | None = None, **settings: Any) -> "RemoteMarlin":
        """From ``openai://host:port/v1/<model>``; ``settings`` are :class:`ServerSettings` fields."""
        return cls(parse_server_model(model), api_key=api_key, settings=ServerSettings(**settings), name_or_path=model)

    # ------------------------------------------------------------------ server

    def _http(self) -> dict:
        return {"api_key": self.api_key, "timeout_s": self.settings.timeout_s, "retry": self.settings.retry}

    def check(self) -> None:
        """Fail fast, with one line, when the server is down or does not serve this model.

        Raises:
            ServerUnavailableError: unreachable.
            MarlinError: reachable, but the model name is not among the served ones.
        """
        url = f"{self.endpoint.base_url}/models"
        models = get_json(url, **self._http())
        entries = models.get("data") if isinstance(models, dict) else None
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise malformed(url, "GET /v1/models is not an object with a 'data' list of models")
        served = [entry.get("id") for entry in entries]
        if self.endpoint.model not in served:
            raise MarlinError(f"server {self.endpoint.base_url} does not serve {self.endpoint.model!r}; "
                              f"it serves {served}: use openai://.../v1/<one of these>")

    def _answer(self, part: chat_request.VideoPart, prompt: str, decoding: _Decoding) -> chat_request.ServerAnswer:
        body = chat_request.chat_body(self.endpoint.model, part, prompt, max_new_tokens=decoding.max_new_tokens,
                                      do_sample=decoding.do_sample, temperature=decoding.temperature,
                                      top_p=decoding.top_p)
        url = f"{self.endpoint.base_url}/chat/completions"
        answer = post_json(url, body, **self._http())
        try:
            return chat_request.parse_answer(answer)
        except chat_request.AnswerShapeError as error:
            raise malformed(url, str(error)) from None

    # ------------------------------------------------------------------ video

    def _load(self, video, options: dict) -> tuple[SampledVideo, str]:
        sampling = SamplingOptions(**{k: v for k, v in options.items() if k != "timestamps"})
        sampled = video if isinstance(video, SampledVideo) else load_video(video, sampling)
        return sampled, options.get("timestamps", "video")

    def _part(self, video, options: dict) -> chat_request.VideoPart:
        sampled, timestamps = self._load(video, options)
        return chat_request.video_part(sampled, timestamps, self.settings.frame_format)

    @staticmethod
    def _windows(video, window_s: float | None, options: dict) -> list[tuple[float, float]] | None:
        """The windows of a long video, or None when it fits in one call (the engine's rule)."""
        if window_s is None or options.get("video_start") is not None or options.get("video_end") is not None:
            return None
        if not isinstance(video, (str, Path)):
            return None
        windows = plan_windows(video_info(video).duration_s, window_s=window_s)
        return windows if len(windows) > 1 else None

    @staticmethod
    def _per_window(windows, options: dict, run: Callable[[dict], Any], progress=None,
                    store: WindowStore | None = None) -> list:
        """Run each window (window-local timestamps), skipping those ``store`` already holds."""
        done = {(float(a), float(b)): result for (a, b), result in (store.load() if store else {}).items()}
        results = []
        for index, (start_s, end_s) in enumerate(windows):
            result = done.get((start_s, end_s))
            if result is None:
                result = run(dict(options, video_start=start_s, video_end=end_s, timestamps="window"))
                if store is not None:
                    store.save((start_s, end_s), result)
            results.append(((start_s, end_s), result))
            if progress is not None:
                progress(index + 1, len(windows))
        return results

    # ------------------------------------------------------------------ public API (engine's)

    def caption(self, video: VideoLike, *, max_new_tokens: int = CAPTION_MAX_NEW_TOKENS, prompt: str | None = None,
                do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                window_s: float | None = DEFAULT_WINDOW_S, window_progress: Callable[[int, int], None] | None = None,
                window_store: WindowStore | None = None, **video_options) -> dict:
        """Describe a video; same result as ``Marlin.caption``."""
        decoding = _Decoding(max_new_tokens, do_sample, temperature, top_p)

        def run(options: dict) -> dict:
            return chat_request.caption_result(self._answer(self._part(video, options), prompt or CAPTION_PROMPT,
                                                            decoding))

        windows = self._windows(video, window_s, video_options)
        if windows is None:
            return run(video_options)
        return merge_window_captions(self._per_window(windows, video_options, run, window_progress, window_store))

    def find(self, video: VideoLike, event: str, **kwargs) -> dict:
        """When does ``event`` happen; same result as ``Marlin.find``."""
        return self.find_many(video, [event], **kwargs)[0]

    def find_many(self, video: VideoLike, events: Sequence[str], *, max_new_tokens: int = FIND_MAX_NEW_TOKENS,
                  prompt: str | None = None, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                  window_s: float | None = DEFAULT_WINDOW_S,
                  window_progress: Callable[[int, int], None] | None = None,
                  window_store: WindowStore | None = None, **video_options) -> list[dict]:
        """``find`` for several queries; the video is decoded and encoded once, the queries run concurrently."""
        decoding = _Decoding(max_new_tokens, do_sample, temperature, top_p)
        prompts = [prompt.format(query=q) if prompt else find_prompt(q) for q in events]

        def run(options: dict) -> list[dict]:
            part = self._part(video, options)
            with ThreadPoolExecutor(max(1, min(self.settings.max_concurrent, len(prompts)))) as pool:
                answers = list(pool.map(lambda text: self._answer(part, text, decoding), prompts))
            return [chat_request.find_result(answer, query) for answer, query in zip(answers, events)]

        windows = self._windows(video, window_s, video_options)
        if windows is None:
            return run(video_options)
        per_window = self._per_window(windows, video_options, run, window_progress, window_store)
        return [
            dict(merge_window_finds([(window, results[i]) for window, results in per_window]), query=query)
            for i, query in enumerate(events)
        ]

    def caption_batch(self, videos: Sequence[VideoLike], *, batch_size: int = 4, **kwargs) -> list[dict]:
        """Caption several videos concurrently; raises the first error (``iter_captions`` reports per video)."""
        results = []
        for _, result in self.iter_captions(videos, **kwargs):
            if isinstance(result, BaseException):
                raise result
            results.append(result)
        return results

    def find_batch(self, pairs: Sequence[tuple[VideoLike, str]], *, batch_size: int = 4, **kwargs) -> list[dict]:
        """``find`` for ``(video, query)`` pairs, concurrently; raises the first error."""
        results = []
        for _, result in self.iter_finds([(video, [query]) for video, query in pairs], **kwargs):
            if isinstance(result, BaseException):
                raise result
            results.append(result[0])
        return results

    def iter_captions(self, videos: Iterable[VideoLike | WorkItem], *, batch_size: int | str | None = None,
                      prefetch_depth: int | None = None,
                      window_progress: Callable[[Hashable, int, int], None] | None = None,
                      window_store: Callable[[Hashable], WindowStore | None] | None = None,
                      **settings) -> Iterator[tuple[Hashable, dict | BaseException]]:
        """Yield ``(key, result or exception)`` in input order, ``max_concurrent`` videos in flight.

        Items and callbacks as ``Marlin.iter_captions``: paths (the key is the path) or ``WorkItem`` s.
        ``batch_size`` and ``prefetch_depth`` are the engine's knobs and are ignored here: the server
        batches concurrent requests itself, and decoding here overlaps with it through the concurrency.
        """
        def one(item: WorkItem) -> dict:
            return self.caption(item.video, **self._window_hooks(item.key, window_progress, window_store), **settings)

        yield from self._concurrently((v if isinstance(v, WorkItem) else WorkItem(v, v) for v in videos), one)

    def iter_finds(self, items: Iterable[tuple[VideoLike, Sequence[str]] | WorkItem], *,
                   batch_size: int | str | None = None, prefetch_depth: int | None = None,
                   window_progress: Callable[[Hashable, int, int], None] | None = None,
                   window_store: Callable[[Hashable], WindowStore | None] | None = None,
                   **settings) -> Iterator[tuple[Hashable, list[dict] | BaseException]]:
        """Yield ``(key, [result per query] or exception)`` in input order, ``max_concurrent`` videos in flight.

        Items are ``(video, queries)`` pairs (the key is the video) or ``WorkItem`` s with ``queries``.
        """
        def one(item: WorkItem) -> list[dict]:
            return self.find_many(item.video, list(item.queries),
                                  **self._window_hooks(item.key, window_progress, window_store), **settings)

        work = (i if isinstance(i, WorkItem) else WorkItem(i[0], i[0], tuple(i[1])) for i in items)
        yield from self._concurrently(work, one)

    @staticmethod
    def _window_hooks(key: Hashable, progress, store) -> dict:
        """One video's ``window_progress`` / ``window_store`` from the iterators' per-key callbacks."""
        return {"window_store": store(key) if store else None,
                "window_progress": (lambda done, total: progress(key, done, total)) if progress else None}

    def _concurrently(self, items: Iterable[WorkItem], work: Callable[[WorkItem], Any]) -> Iterator[tuple[Hashable, Any]]:
        """``(item.key, work(item) or its exception)`` in input order, at most ``max_concurrent`` at once.

        The server is checked once first: when it is down (or does not serve the model), every item gets
        that one-line error at once instead of each retrying against a dead address.
        """
        try:
            self.check()
        except MarlinError as error:
            for item in items:
                yield item.key, error
            return
        limit = max(1, int(self.settings.max_concurrent))
        with ThreadPoolExecutor(limit) as pool:
            pending: deque = deque()
            for item in items:
                pending.append((item.key, pool.submit(_safe, work, item)))
                if len(pending) >= limit:
                    key, future = pending.popleft()
                    yield key, future.result()
            while pending:
                key, future = pending.popleft()
                yield key, future.result()


def _safe(work: Callable, item) -> Any:
    try:
        return work(item)
    except Exception as error:  # noqa: BLE001 - reported per video, the batch goes on
        return error
